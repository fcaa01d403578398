FROM alpine:3.19 AS build
RUN echo one > /one
FROM alpine:3.19 AS build
COPY --from=build /one /one
