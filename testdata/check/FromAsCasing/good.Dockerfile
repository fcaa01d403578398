FROM alpine:3.19 AS build
RUN echo hi > /x
FROM alpine:3.19 AS final
COPY --from=build /x /x
