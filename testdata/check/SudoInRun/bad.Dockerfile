FROM alpine:3.19
RUN sudo make install
