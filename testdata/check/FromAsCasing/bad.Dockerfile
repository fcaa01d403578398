FROM alpine:3.19 as build
RUN echo hi > /x
from alpine:3.19 AS final
copy --from=build /x /x
