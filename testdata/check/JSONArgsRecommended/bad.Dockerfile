FROM alpine:3.19
ENTRYPOINT my-server --port 80
