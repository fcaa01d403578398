FROM alpine:3.19
COPY . /app
COPY deploy/*.pem /etc/ssl/
