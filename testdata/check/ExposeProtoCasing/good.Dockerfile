FROM alpine:3.19
EXPOSE 80/tcp 53/udp
