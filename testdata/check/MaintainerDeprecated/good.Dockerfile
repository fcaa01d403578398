FROM alpine:3.19
LABEL org.opencontainers.image.authors="jane@example.com"
