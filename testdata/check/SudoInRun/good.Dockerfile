FROM alpine:3.19
RUN make install
