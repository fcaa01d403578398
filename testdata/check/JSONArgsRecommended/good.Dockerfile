FROM alpine:3.19
ENTRYPOINT ["my-server", "--port", "80"]
SHELL ["/bin/sh", "-c"]
CMD my-server --port 80
