# Azurite, Microsoft's Azure Storage emulator (npm), as the local cluster's Blob Storage: the task
# logs' storage account. Node.js and npm from Debian; Azurite pinned here.
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}
ARG AZURITE_VERSION=3.35.0

# Extra CA certificates (PEM, *.crt in certs/) for TLS-intercepting proxies, trusted by apt and npm.
COPY certs/ /usr/local/share/ca-certificates/extra/
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ca-certificates nodejs npm \
    && update-ca-certificates \
    && npm install --global --no-audit --no-fund --cafile /etc/ssl/certs/ca-certificates.crt \
        "azurite@${AZURITE_VERSION}" \
    && npm cache clean --force \
    && rm -rf /var/lib/apt/lists/*

USER 65534
ENTRYPOINT ["azurite-blob"]
