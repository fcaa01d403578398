FROM alpine:3.19
WORKDIR /usr/src/app
RUN make -C /usr/src/app install
