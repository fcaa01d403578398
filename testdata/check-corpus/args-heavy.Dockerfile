ARG REGISTRY=docker.io
ARG BASE_IMAGE=library/debian
ARG BASE_TAG=bookworm-20240110-slim
ARG VERSION=0.0.0

FROM ${REGISTRY}/${BASE_IMAGE}:${BASE_TAG} AS runtime
ARG VERSION
ARG BUILD_DATE=unknown
ARG VCS_REF=unknown
LABEL org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.created="${BUILD_DATE}" \
      org.opencontainers.image.revision="${VCS_REF}"
ENV APP_VERSION=${VERSION} \
    APP_HOME=/opt/app
WORKDIR ${APP_HOME}
RUN set -eux; \
    apt-get update; \
    apt-get install -y --no-install-recommends tini; \
    apt-get clean; \
    rm -rf /var/lib/apt/lists/*
COPY --chmod=0755 entrypoint.sh /usr/local/bin/
USER 1000:1000
ENTRYPOINT ["tini", "--", "entrypoint.sh"]
CMD ["serve"]
