FROM alpine:3.19
run echo hello
COPY a.txt /a.txt
