# Stand-in for the official PostgreSQL image (scripts/docker-bases.sh): Debian's PostgreSQL 15,
# a cluster made on first start in /var/lib/postgresql/data from POSTGRES_USER,
# POSTGRES_PASSWORD and POSTGRES_DB (what docker-compose.yml sets), listening on port 5432.
ARG DEBIAN_IMAGE=nnbench-base/debian:bookworm
# hadolint ignore=DL3006
FROM ${DEBIAN_IMAGE}
# No default cluster: the entrypoint makes the one the environment describes.
# hadolint ignore=DL3008
RUN mkdir -p /etc/postgresql-common \
    && echo "create_main_cluster = false" > /etc/postgresql-common/createcluster.conf \
    && apt-get update \
    && apt-get install -y --no-install-recommends postgresql-15 \
    && rm -rf /var/lib/apt/lists/* \
    && install -d -o postgres -g postgres -m 700 /var/lib/postgresql/data \
    && install -d -o postgres -g postgres -m 2775 /var/run/postgresql
COPY postgres-entrypoint.sh /usr/local/bin/
ENV PATH=/usr/lib/postgresql/15/bin:$PATH \
    PGDATA=/var/lib/postgresql/data
# hadolint ignore=DL3066
USER postgres
VOLUME ["/var/lib/postgresql/data"]
EXPOSE 5432
ENTRYPOINT ["postgres-entrypoint.sh"]
