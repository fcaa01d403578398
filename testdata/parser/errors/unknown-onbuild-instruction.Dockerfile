FROM alpine
ONBUILD CPY . /app
