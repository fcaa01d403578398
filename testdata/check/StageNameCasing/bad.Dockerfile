FROM alpine:3.19 AS Build
RUN echo hi
