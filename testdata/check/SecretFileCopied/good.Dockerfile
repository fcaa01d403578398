FROM alpine:3.19
COPY app.py .env.example /app/
COPY src/ /app/src/
COPY deploy/ca.crt /etc/ssl/
