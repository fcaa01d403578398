FROM debian:bookworm-slim
RUN curl -fsSL https://example.com/install.sh | sh -s -- --yes
