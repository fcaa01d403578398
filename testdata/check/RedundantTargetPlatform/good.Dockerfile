FROM --platform=$BUILDPLATFORM alpine:3.19
RUN echo hi
