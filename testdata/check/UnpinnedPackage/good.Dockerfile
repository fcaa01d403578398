FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends curl=7.88.1-10 git=1:2.39.2-1.1 \
 && rm -rf /var/lib/apt/lists/*
FROM alpine:3.19
RUN apk add --no-cache bash=5.2.21-r0
COPY --from=0 /etc/os-release /debian-os-release
RUN pip install --no-cache-dir flask==3.0.0 -r requirements.txt
