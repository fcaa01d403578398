FROM alpine:3.19
COPY secrets/config.yaml /etc/app/config.yaml
