FROM alpine:3.19 AS build
RUN echo one > /one
FROM alpine:3.19 AS final
COPY --from=build /one /one
