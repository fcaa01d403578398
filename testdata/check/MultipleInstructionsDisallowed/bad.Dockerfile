FROM alpine:3.19
CMD ["echo", "one"]
HEALTHCHECK CMD ["true"]
CMD ["echo", "two"]
HEALTHCHECK NONE
