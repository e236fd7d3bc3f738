# syntax=docker/dockerfile:1
# streamer image: wheels are built in a throw-away stage so the runtime has no compiler.
# Build with scripts/build_image.sh (tags version + git sha and prints metadata).

ARG PYTHON_IMAGE=python:3.11-slim-bookworm
# Optional parts installed (pip extras): "embedded" (chDB, ClickHouse inside the process, the
# default when CLICKHOUSE_URL is unset). Build with --build-arg INSTALL_EXTRAS= for a
# server-only image (CLICKHOUSE_URL must name a server). The demo's broker is never included.
ARG INSTALL_EXTRAS=embedded

# ---- stage 1: build wheels for the package and every dependency --------------------------
FROM ${PYTHON_IMAGE} AS build
ARG INSTALL_EXTRAS
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
# A compiler only for dependencies that ship no wheel for this platform.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# README.md* : the glob keeps the build working while the README is absent.
COPY pyproject.toml constraints.txt README.md* ./
COPY streamer ./streamer
# constraints.txt: the exact versions CI tested. Only the wheels of the chosen extras are built,
# so a server-only image never carries the engine, not even in a copied layer.
RUN pip wheel --wheel-dir /wheels -c constraints.txt ".${INSTALL_EXTRAS:+[${INSTALL_EXTRAS}]}"

# ---- stage 2: slim runtime, non-root ------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime
ARG VERSION=0.0.0
ARG GIT_SHA=unknown
ARG BUILD_DATE=unknown
ARG INSTALL_EXTRAS
LABEL org.opencontainers.image.title="streamer" \
      io.streamer.extras="${INSTALL_EXTRAS}" \
      org.opencontainers.image.description="Exact stream-driven trending and suggested-users caches" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${GIT_SHA}" \
      org.opencontainers.image.created="${BUILD_DATE}"
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    STREAMER_DATA_DIR=/var/lib/streamer \
    STREAMER_WEB_PORT=6066 \
    LOG_FORMAT=json
# UID/GID 1000, numeric in USER so Kubernetes runAsNonRoot can verify it without /etc/passwd.
RUN groupadd --gid 1000 streamer \
    && useradd --uid 1000 --gid 1000 --home-dir /home/streamer --create-home \
       --shell /usr/sbin/nologin streamer \
    && mkdir -p /var/lib/streamer \
    && chown 1000:1000 /var/lib/streamer
COPY --from=build /wheels /wheels
RUN pip install --no-index --find-links=/wheels /wheels/*.whl \
    && rm -rf /wheels
# Relative paths written by libraries land in the state directory (writable even with a
# read-only root filesystem, where it is a mounted volume).
WORKDIR /var/lib/streamer
USER 1000:1000
EXPOSE 6066
# /healthz answers 200 while the process is alive; the port follows STREAMER_WEB_PORT.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('STREAMER_WEB_PORT', '6066'), timeout=4)"]
CMD ["streamer", "worker"]
