# syntax=docker/dockerfile:1.7
FROM nginx:1.25-alpine
COPY <<EOT /etc/nginx/conf.d/default.conf
server {
    listen 8080;
    location / {
        root /usr/share/nginx/html;
    }
}
EOT
RUN <<EOT
set -eux
mkdir -p /var/cache/nginx/client_temp
chown -R nginx:nginx /var/cache/nginx
EOT
COPY --chown=nginx:nginx site/ /usr/share/nginx/html/
USER nginx
EXPOSE 8080
STOPSIGNAL SIGQUIT
CMD ["nginx", "-g", "daemon off;"]
