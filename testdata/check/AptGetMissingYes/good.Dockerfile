FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get -qq install --no-install-recommends curl \
 && sudo_free=1 apt-get install --yes --no-install-recommends git \
 && rm -rf /var/lib/apt/lists/*
