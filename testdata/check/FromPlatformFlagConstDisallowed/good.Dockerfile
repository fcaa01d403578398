FROM --platform=$BUILDPLATFORM alpine:3.19 AS build
RUN echo hi > /x
FROM --platform=linux/arm64 alpine:3.19 AS build-arm64
COPY --from=build /x /x
