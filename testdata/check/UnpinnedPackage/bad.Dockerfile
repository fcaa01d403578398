FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends curl=7.88.1-10 git \
 && rm -rf /var/lib/apt/lists/*
FROM alpine:3.19
RUN apk add --no-cache bash
RUN pip install --no-cache-dir flask
