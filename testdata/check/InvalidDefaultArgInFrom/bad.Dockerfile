ARG VARIANT
FROM golang:${VARIANT}
RUN go version
