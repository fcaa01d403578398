FROM rust:1.77-slim-bookworm AS builder
WORKDIR /usr/src/app
RUN --mount=type=cache,target=/var/cache/apt,sharing=locked \
    --mount=type=cache,target=/var/lib/apt,sharing=locked \
    apt-get update && apt-get install -y --no-install-recommends pkg-config libssl-dev
COPY Cargo.toml Cargo.lock ./
COPY src ./src
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/src/app/target \
    cargo build --release && cp target/release/app /usr/local/bin/app

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=builder /usr/local/bin/app /app
ENTRYPOINT ["/app"]
