# The Airflow image, one definition for both places it runs, so local equals prod:
# - target `local`: the local stack's image, built by `ariel local up --engine docker` from a staged
#   context (requirements.txt, constraints.txt, certs/); the kit itself is mounted at run time, so kit
#   changes need no rebuild;
# - target `platform`: the same Airflow, pins and providers, with the kit installed and the entry
#   point the official chart's containers and probes call; `ariel platform render` writes its context
#   (this file, the kit's requirements and constraints, the kit's source in kit/).
# BASE_IMAGE: any Debian bookworm image (companies without a registry: localdev/debootstrap-base.sh).
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE} AS local

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

# The platform image: the chart runs Airflow as uid 50000 with gid 0, calls `/entrypoint` in its
# probes, passes each component's command as args and runs `/clean-logs` in its log groomers.
FROM local AS platform
ARG AIRFLOW_UID=50000
COPY kit/ /opt/ariel/build/kit/
RUN pip install --no-cache-dir --no-deps /opt/ariel/build/kit \
    && install -m 0755 /opt/ariel/build/kit/localdev/clean-logs.sh /clean-logs \
    && rm -rf /opt/ariel/build \
    && printf '#!/bin/sh\nexec "$@"\n' > /entrypoint \
    && chmod 0755 /entrypoint \
    && mkdir -p /opt/airflow /home/airflow \
    && chown -R "${AIRFLOW_UID}:0" /opt/airflow /home/airflow \
    && chmod -R g+rwX /opt/airflow /home/airflow
# requests (azure-identity's transport) trusts the system bundle too, with any extra CA in it.
ENV PYTHONPATH= \
    HOME=/home/airflow \
    REQUESTS_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt
USER ${AIRFLOW_UID}:0
ENTRYPOINT ["/entrypoint"]
CMD ["airflow", "version"]
