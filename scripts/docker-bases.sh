#!/usr/bin/env bash
# Local stand-ins for the base images, to build nnbench's image (and run docker-compose.yml)
# where no image registry can be reached. Only Debian's package registry is used.
#
#   bash scripts/docker-bases.sh          (as root, with a running Docker engine and debootstrap)
#
# It makes, each only when its tag is not there yet (FORCE=1 makes them again):
#   nnbench-base/debian:bookworm       Debian bookworm from debootstrap, `docker import`ed
#   nnbench-base/python:3.11-bookworm  the above with Debian's Python 3.11 (python, venv, pip)
#   nnbench-base/postgres:15-bookworm  the above with Debian's PostgreSQL 15, set up from
#                                      POSTGRES_USER/_PASSWORD/_DB as the official image is
# and prints the tags. Then, for example:
#   DOCKER_BUILDKIT=1 docker build -t nnbench --build-arg PYTHON_IMAGE=nnbench-base/python:3.11-bookworm .
#   PYTHON_IMAGE=nnbench-base/python:3.11-bookworm \
#   NNBENCH_POSTGRES_IMAGE=nnbench-base/postgres:15-bookworm docker compose up -d mlflow
#
# The CA bundle that pip here is configured with (`pip config list`: cert=..., or
# $CA_BUNDLE) is trusted inside, by the system and by pip: where the package registries are
# reached through an intercepting proxy, builds on these bases reach them too. Builds run
# with --network host. MIRROR=<url> picks another Debian mirror, DOCKER=<path> another CLI.
set -euo pipefail

MIRROR=${MIRROR:-http://deb.debian.org/debian}
DEBIAN_IMAGE=${DEBIAN_IMAGE:-nnbench-base/debian:bookworm}
PYTHON_IMAGE=${PYTHON_IMAGE:-nnbench-base/python:3.11-bookworm}
POSTGRES_IMAGE=${POSTGRES_IMAGE:-nnbench-base/postgres:15-bookworm}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PIP=${PIP:-python3 -m pip}
DOCKER=${DOCKER:-docker}

have() { [ -z "${FORCE:-}" ] && "$DOCKER" image inspect "$1" >/dev/null 2>&1; }

ca_bundle() {
    # pip's own setting first (global.cert or $PIP_CERT), then the system's bundle.
    local cert
    cert=$($PIP config list 2>/dev/null | sed -n "s/^[^ ]*\.cert='\(.*\)'$/\1/p" | head -n 1)
    cert=${CA_BUNDLE:-${cert:-/etc/ssl/certs/ca-certificates.crt}}
    [ -f "$cert" ] || { echo "docker-bases: no CA bundle at $cert (set CA_BUNDLE)" >&2; exit 1; }
    echo "$cert"
}

debian() {
    have "$DEBIAN_IMAGE" && return
    command -v debootstrap >/dev/null || { echo "docker-bases: needs debootstrap" >&2; exit 1; }
    local root
    root=$(mktemp -d /var/tmp/nnbench-bookworm.XXXXXX)
    debootstrap --variant=minbase --include=ca-certificates bookworm "$root" "$MIRROR" >&2
    printf 'deb %s bookworm main\ndeb %s bookworm-updates main\n' "$MIRROR" "$MIRROR" \
        > "$root/etc/apt/sources.list"
    echo "deb ${MIRROR%/debian}/debian-security bookworm-security main" >> "$root/etc/apt/sources.list"
    cp "$(ca_bundle)" "$root/usr/local/share/ca-certificates/nnbench-host-bundle.crt"
    chroot "$root" update-ca-certificates >&2
    printf '[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n' > "$root/etc/pip.conf"
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
    tar -C "$root" -c . | "$DOCKER" import \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'ENV LANG=C.UTF-8' \
        --change 'CMD ["bash"]' - "$DEBIAN_IMAGE" >&2
    rm -rf "$root"
}

built_on_debian() {  # <tag> <Dockerfile under scripts/docker-bases/>
    have "$1" && return
    env -u DOCKER_BUILDKIT "$DOCKER" build --network host --build-arg "DEBIAN_IMAGE=$DEBIAN_IMAGE" \
        -t "$1" -f "$HERE/docker-bases/$2" "$HERE/docker-bases" >&2
}

debian
built_on_debian "$PYTHON_IMAGE" python.Dockerfile
built_on_debian "$POSTGRES_IMAGE" postgres.Dockerfile
printf '%s\n' "$DEBIAN_IMAGE" "$PYTHON_IMAGE" "$POSTGRES_IMAGE"
