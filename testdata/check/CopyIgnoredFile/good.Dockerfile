FROM alpine:3.19
COPY config/app.yaml /etc/app/config.yaml
