# syntax=docker/dockerfile:1
FROM alpine AS base
RUN <<EOF
set -e
echo hello
EOF
COPY --chmod=0755 <<-'SCRIPT' /usr/local/bin/run
	#!/bin/sh
	exec "$@"
	SCRIPT
RUN 3<<A cat /dev/fd/3 && <<B python3
alpha
A
print("beta")
B
ONBUILD RUN <<EOF
echo later
EOF
