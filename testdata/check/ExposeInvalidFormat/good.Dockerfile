FROM alpine:3.19
EXPOSE 80 443/tcp 53/udp
