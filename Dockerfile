# nnbench in a container: a CPU image by default, a GPU image (CUDA 12, CuPy) by build argument.
#   docker build -t nnbench .
#   docker build -t nnbench:gpu --build-arg VARIANT=gpu .
#   docker run --rm -v "$PWD/outputs:/work/outputs" nnbench +sweep=lr
#   docker run --rm --gpus all -v "$PWD/outputs:/work/outputs" nnbench:gpu backend=cupy
# The runs' manifests name the commit when it is passed in (make image does this):
#   --build-arg GIT_COMMIT="$(git rev-parse HEAD)" --build-arg GIT_DIRTY=false
# It needs BuildKit (the GPU stage mounts uv), which every Docker since 23 uses; with an older
# engine's CLI, set DOCKER_BUILDKIT=1. No `# syntax=` line: BuildKit's built-in frontend
# reads this file, so nothing but the base images and the package registries is needed.
#
# Every base image is a build argument, pinned by tag and digest. To move to newer ones,
# change the tag and take its digest from `docker buildx imagetools inspect <image:tag>`;
# --build-arg PYTHON_IMAGE=... (or CUDA_IMAGE, UV_IMAGE) overrides one for a single build,
# e.g. a local stand-in from scripts/docker-bases.sh where no image registry is reachable.
# Python packages come from the lock files (`make lock`), checked against their hashes.
# tests/test_docker.py lints this file with hadolint; tests/test_docker_engine.py builds the
# CPU image with a Docker engine and runs it.

ARG VARIANT=cpu
ARG PYTHON_IMAGE=python:3.11.7-slim-bookworm@sha256:d11b9bd5e49ea7401753d78f4d3b56f3aec952b85b49bcae88981f0452818e0b
ARG CUDA_IMAGE=nvidia/cuda:12.6.3-runtime-ubuntu22.04@sha256:63a18dd805367dacfb077aeced8384ab2fb569598ec5f5f5220c3f90a5c23650
ARG UV_IMAGE=ghcr.io/astral-sh/uv:0.9.7@sha256:ba4857bf2a068e9bc0e64eed8563b065908a4cd6bfb66b531a9c424c8e25e142

FROM ${UV_IMAGE} AS uv

# CPU: the official Python image, the Python the lock files were resolved for.
FROM ${PYTHON_IMAGE} AS base-cpu
ENV NNBENCH_LOCK=requirements.lock

# GPU: NVIDIA's CUDA runtime libraries (CuPy loads cuBLAS, cuRAND and NVRTC from them; the
# driver comes from the host) and the same CPython 3.11.7 as a standalone build installed by
# uv, which stays out of the image (Ubuntu 22.04 has no Python 3.11 release of its own).
FROM ${CUDA_IMAGE} AS base-gpu
ENV NNBENCH_LOCK=requirements-gpu.lock
ARG UV_PYTHON_INSTALL_DIR=/opt/python
RUN --mount=from=uv,source=/uv,target=/usr/local/bin/uv \
    uv python install 3.11.7 \
    && ln -s "$(uv python find 3.11.7)" /usr/local/bin/python3 \
    && ln -s python3 /usr/local/bin/python \
    && python --version

# base-cpu or base-gpu, the stages above (hadolint takes the name for an untagged image).
# hadolint ignore=DL3006
FROM base-${VARIANT} AS image
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

# Install steps: the locked packages, checked against their hashes, then nnbench itself.
WORKDIR /opt/nnbench
COPY requirements.lock requirements-gpu.lock ./
RUN python -m venv "$VIRTUAL_ENV" \
    && pip install --require-hashes -r "$NNBENCH_LOCK"
COPY pyproject.toml README.md ./
COPY nnbench ./nnbench
COPY conf ./conf
COPY hydra_plugins ./hydra_plugins
RUN pip install --no-deps . \
    && python -c "import nnbench"

# nnbench's CPU kernels (nnbench/backend/_native.c), built here once for every x86-64 CPU
# (the library picks AVX-512, AVX2 or SSE2 as it loads); the compiler leaves with this layer
# (only the packages this step added are removed), and runs load the library from
# NNBENCH_NATIVE_LIBRARY. Without it they take the NumPy path: the same results up to the last
# bits (float64 too: compare runs on the same path, which every manifest names), slower.
# hadolint ignore=DL3008,SC2086
RUN added="$(for p in gcc libc6-dev; do dpkg -s "$p" >/dev/null 2>&1 || echo "$p"; done)" \
    && apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev \
    && python -m nnbench.backend --build-kernels /opt/nnbench/kernels \
    && if [ -n "$added" ]; then apt-get purge -y --auto-remove $added; fi \
    && rm -rf /var/lib/apt/lists/*
ENV NNBENCH_NATIVE_LIBRARY=/opt/nnbench/kernels/nnbench-native.so

# A non-root user (uid 1000, the usual first user on a desktop: files written to a mounted
# outputs/ stay yours; `docker run -u "$(id -u):$(id -g)"` for another uid). /mlartifacts is
# where the image keeps artifacts when it serves as docker-compose.yml's tracking server.
RUN useradd --uid 1000 --user-group --create-home --shell /usr/sbin/nologin nnbench \
    && mkdir -p /work/outputs /mlartifacts \
    && chown nnbench:nnbench /work/outputs /mlartifacts

# Everything a run writes goes under /work/outputs: mount it to keep the runs. CuPy's kernel
# cache lives there too, so kernels compile once per outputs folder; matplotlib's cache is
# throwaway. Both lie where a run can write, whichever uid runs the container.
ARG GIT_COMMIT=""
ARG GIT_DIRTY=""
ENV MPLCONFIGDIR=/tmp/matplotlib \
    CUPY_CACHE_DIR=/work/outputs/.cache/cupy \
    NNBENCH_GIT_COMMIT=${GIT_COMMIT} \
    NNBENCH_GIT_DIRTY=${GIT_DIRTY}
LABEL org.opencontainers.image.title="nnbench" \
      org.opencontainers.image.revision="${GIT_COMMIT}"
WORKDIR /work
USER 1000:1000
VOLUME ["/work/outputs"]
ENTRYPOINT ["python", "-m", "nnbench"]
