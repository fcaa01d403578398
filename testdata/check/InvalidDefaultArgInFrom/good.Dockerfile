ARG VARIANT=1.22-alpine
FROM golang:${VARIANT}
RUN go version
