FROM alpine:3.19
ENV APP_HOME=/srv/app
LABEL maintainer=someone@example.com
