FROM alpine:3.19 AS base
RUN echo hi
