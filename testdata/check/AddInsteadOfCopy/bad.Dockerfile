FROM alpine:3.19
ADD config.yaml /etc/app/config.yaml
