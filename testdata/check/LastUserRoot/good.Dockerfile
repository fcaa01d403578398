FROM alpine:3.19
USER root
RUN adduser -D app
USER app
