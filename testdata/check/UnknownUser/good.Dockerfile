FROM alpine:3.19
USER nobody:nogroup
FROM alpine:3.19
COPY --from=0 /etc/hostname /x
RUN adduser -D app
USER app
FROM alpine:3.19
COPY --from=1 /x /y
RUN <<EOT
set -eu
adduser -D worker
EOT
USER worker
