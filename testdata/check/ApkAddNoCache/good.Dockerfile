FROM alpine:3.19
RUN apk --no-cache add curl
RUN --mount=type=cache,target=/var/cache/apk apk add git
