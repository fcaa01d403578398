FROM alpine:3.19
RUN cd /usr/src/app && make install
