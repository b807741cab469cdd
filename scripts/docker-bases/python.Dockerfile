# Stand-in for the official Python image (scripts/docker-bases.sh): Debian's Python 3.11 with
# venv and pip, `python` on PATH.
ARG DEBIAN_IMAGE=nnbench-base/debian:bookworm
# hadolint ignore=DL3006
FROM ${DEBIAN_IMAGE}
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv python3-pip python-is-python3 \
    && rm -rf /var/lib/apt/lists/* \
    && python --version
CMD ["python3"]
