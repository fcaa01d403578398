FROM debian:bookworm-slim
RUN curl -fsSLo /tmp/install.sh https://example.com/install.sh \
 && echo "5f1e1c3b2a  /tmp/install.sh" | sha256sum -c - \
 && sh /tmp/install.sh --yes
