FROM alpine:3.19
WORKDIR /srv
WORKDIR app
