FROM alpine:3.19
COPY config.yaml /etc/app/config.yaml
ADD rootfs.tar.gz /
ADD https://example.com/tool.tgz /opt/
