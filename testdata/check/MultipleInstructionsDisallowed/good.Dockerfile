FROM alpine:3.19 AS build
CMD ["echo", "one"]
FROM build
CMD ["echo", "two"]
HEALTHCHECK CMD ["true"]
