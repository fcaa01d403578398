FROM debian:bookworm-slim

ENV LANG=C.UTF-8

RUN set -eux; \
	apt-get update; \
	apt-get install -y --no-install-recommends \
		ca-certificates \
		curl \
		gnupg \
	; \
	rm -rf /var/lib/apt/lists/*

RUN set -eux; \
	groupadd --system --gid 999 redis; \
	useradd --system --uid 999 --gid redis --home-dir /data redis

WORKDIR /data
VOLUME /data
USER redis
CMD ["redis-server"]
