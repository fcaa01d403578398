ARG ALPINE_VERSION=3.19
FROM alpine:${ALPINE_VERSION} AS build
RUN echo hi > /x
FROM --platform=$BUILDPLATFORM alpine:${ALPINE_VERSION}
COPY --from=build /x /x
