# syntax=docker/dockerfile:1
# SYNTAX = other
FROM alpine
