# The local stack's database image: PostgreSQL 15 and PgBouncer from Debian's packages, one image
# for both services (and the local cluster's PgBouncer and database stand-in). The CA bundle lets
# PgBouncer verify the database server's certificate (server_tls_sslmode=verify-full).
# The entrypoint follows the official postgres image's contract (POSTGRES_USER, POSTGRES_PASSWORD,
# POSTGRES_DB, PGDATA), so tools made for that image work with it.
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}

RUN mkdir -p /etc/postgresql-common \
    && echo "create_main_cluster = false" > /etc/postgresql-common/createcluster.conf \
    && apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        postgresql-15 pgbouncer ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && mkdir -p /var/lib/postgresql/data /var/run/postgresql \
    && chown postgres:postgres /var/lib/postgresql/data /var/run/postgresql \
    && chmod 700 /var/lib/postgresql/data

COPY db-entrypoint.sh /usr/local/bin/db-entrypoint.sh
ENV PATH=/usr/lib/postgresql/15/bin:$PATH \
    PGDATA=/var/lib/postgresql/data
USER postgres
ENTRYPOINT ["db-entrypoint.sh"]
CMD ["postgres", "-c", "listen_addresses=*"]
