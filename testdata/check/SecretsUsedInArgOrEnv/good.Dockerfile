FROM alpine:3.19
ARG PUBLIC_KEY_FILE=/etc/key.pub
ENV GPG_KEY_VERSION=2
RUN --mount=type=secret,id=token,env=GITHUB_TOKEN echo "$PUBLIC_KEY_FILE"
