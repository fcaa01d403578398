FROM php:8.3-apache-bookworm
RUN set -eux; \
    apt-get update; \
    apt-get install -y --no-install-recommends libzip-dev unzip; \
    docker-php-ext-install zip; \
    rm -rf /var/lib/apt/lists/*
COPY --from=composer:2.7 /usr/bin/composer /usr/bin/composer
WORKDIR /var/www/html
COPY composer.json composer.lock ./
RUN --mount=type=cache,target=/root/.composer/cache \
    composer install --no-dev --no-scripts --no-autoloader
COPY . .
RUN composer dump-autoload --optimize
USER www-data
