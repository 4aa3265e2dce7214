# The local stack's Airflow image: Airflow 3.3 with the kit's and the team's requirements.
# Built by `ariel local up --engine docker` from a staged context (requirements.txt, constraints.txt,
# certs/); the kit itself is mounted at run time, so kit changes need no rebuild.
# BASE_IMAGE: any Debian bookworm image (companies without a registry: localdev/debootstrap-base.sh).
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}

# A registry mirror for Python packages, when PyPI is not reachable directly.
ARG PIP_INDEX_URL=https://pypi.org/simple
ARG UV_VERSION=0.13.9

# Extra CA certificates (PEM, *.crt in certs/) for TLS-intercepting proxies, trusted by apt, pip and uv.
COPY certs/ /usr/local/share/ca-certificates/extra/
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        ca-certificates python3 python3-venv libpq5 git \
    && update-ca-certificates \
    && rm -rf /var/lib/apt/lists/*

ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
    PIP_CERT=/etc/ssl/certs/ca-certificates.crt \
    PIP_INDEX_URL=${PIP_INDEX_URL} \
    UV_DEFAULT_INDEX=${PIP_INDEX_URL} \
    NO_COLOR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/airflow-venv/bin:$PATH

# Bytecode is compiled here, once: a container's own writes are lost with it, so without this
# every start of every component would compile Airflow again.
COPY requirements.txt constraints.txt /opt/ariel/build/
RUN python3 -m venv /opt/airflow-venv \
    && pip install --no-cache-dir "uv==${UV_VERSION}" \
    && uv pip install --no-cache --compile-bytecode --python /opt/airflow-venv/bin/python \
        -c /opt/ariel/build/constraints.txt -r /opt/ariel/build/requirements.txt \
    && pip uninstall -y uv

# The kit is mounted here. Airflow runs as the host user's uid, which has no passwd entry in the
# image: HOME must be writable by anyone, and getpass.getuser() reads USER.
ENV PYTHONPATH=/opt/ariel/kit \
    HOME=/tmp \
    USER=airflow \
    LOGNAME=airflow \
    AIRFLOW_HOME=/opt/airflow
WORKDIR /opt/airflow
