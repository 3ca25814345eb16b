# syntax=docker/dockerfile:1.7
# veu-governor image: one image, three commands (the Helm chart passes the arguments):
#   veuctl serve --host 0.0.0.0 --port 8443 --tls-cert /tls/tls.crt --tls-key /tls/tls.key   (webhook, API, dashboard)
#   veuctl agent run                                                                        (inventory agent)
#   veuctl db upgrade                                                                       (Alembic migrations)
# Build:  docker build --build-arg VERSION=$(git describe --tags) -t ghcr.io/veu-governor/veu-governor:0.1.0 .
# Pin the base by digest in CI: docker buildx imagetools inspect python:3.11.14-slim-bookworm
#   then build with --build-arg PYTHON_IMAGE=python:3.11.14-slim-bookworm@sha256:<digest>

ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

# ---- build: wheels for the package and every dependency (no compiler reaches the runtime image) ----
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY pyproject.toml README.md constraints.txt ./
COPY policies ./policies
COPY agent ./agent
COPY controllers ./controllers
# Dependencies at the versions CI tested (constraints.txt, re-pinned by scripts/lock.sh).
RUN pip wheel --wheel-dir /wheels -c constraints.txt .

# ---- runtime: non-root, read-only friendly, no build tools (pip, setuptools and wheel are removed once the
#      wheels are installed: nothing imports them at run time, and they only add scanner findings) ----
FROM ${PYTHON_IMAGE} AS runtime
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="veu-governor" \
      org.opencontainers.image.description="Export-control governance for GPU clouds: admission webhook, inventory agent, dashboard" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/veu-governor/veu-governor"
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    VEU_PORT=8443
# The UID/GID match the chart's podSecurityContext (runAsUser/runAsGroup 10001).
RUN groupadd --system --gid 10001 veu \
 && useradd --system --uid 10001 --gid 10001 --home-dir /nonexistent --no-create-home --shell /usr/sbin/nologin veu
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-index --find-links=/wheels veu-governor \
 && python -m compileall -q "$(python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" \
 && pip uninstall --yes setuptools wheel pip
USER 10001:10001
WORKDIR /tmp
EXPOSE 8443
# Kubernetes ignores HEALTHCHECK (the chart sets startup/readiness/liveness probes); this serves `docker run`.
HEALTHCHECK --interval=30s --timeout=3s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import os, ssl, urllib.request as u; u.urlopen('https://127.0.0.1:%s/healthz' % os.environ.get('VEU_PORT', '8443'), context=ssl._create_unverified_context(), timeout=2)"]
ENTRYPOINT ["veuctl"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8443", "--tls-cert", "/tls/tls.crt", "--tls-key", "/tls/tls.key"]
