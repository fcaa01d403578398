FROM alpine:3.19 AS test
RUN echo test > /report
FROM alpine:3.19
COPY --from=test /report /report
COPY app /app
