FROM alpine
ENTRYPOINT ["run", 42]
