# syntax=docker/dockerfile:1
# Postbus worker image: `azd deploy` builds it in ACR (remoteBuild). Entry point: `postbus worker`.
# The builder stage has the compiler (python-qpid-proton builds from an sdist); the runtime stage has only the venv.
#
# Both stages use python:3.11-slim-bookworm pinned by the digest of its multi-platform index, as Docker Hub
# published it on 2026-08-25 (Python 3.11.16). To move to a newer build, replace the digest in both FROM lines with
# the one `docker buildx imagetools inspect python:3.11-slim-bookworm` prints.

FROM python:3.11-slim-bookworm@sha256:0bee7276f83efd4a1ee05bbbf4281d95ed28e079220a9457f25a93e3f1e3c31b AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev libssl-dev pkg-config \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Dependencies first, from the lock file (`make lock`), every file checked against its hash: the image runs exactly
# the versions the lock names, and this layer is rebuilt only when the lock changes.
COPY requirements.lock ./
RUN python -m venv /opt/postbus \
    && /opt/postbus/bin/pip install --no-cache-dir --require-hashes -r requirements.lock
# Then Postbus itself, without the emulators: postbus/emulators is a link to ../emulators, which is not copied (and
# not in the build context), so the link dangles and setuptools leaves the package out of the wheel.
# tests/infra/test_packaging.py builds the wheel from exactly these paths and imports the worker from it.
COPY pyproject.toml README.md ./
COPY postbus ./postbus
COPY producers ./producers
COPY worker ./worker
# The base image's own setuptools (pinned with it by the digest) builds the wheel, so nothing unpinned is downloaded;
# the wheel goes in without dependencies, which the lock already installed.
RUN python -m pip wheel --no-cache-dir --no-deps --no-build-isolation --wheel-dir /tmp/wheels . \
    && /opt/postbus/bin/pip install --no-cache-dir --no-deps /tmp/wheels/postbus-*.whl \
    && /opt/postbus/bin/python -m compileall -q /opt/postbus/lib

FROM python:3.11-slim-bookworm@sha256:0bee7276f83efd4a1ee05bbbf4281d95ed28e079220a9457f25a93e3f1e3c31b AS runtime
ENV PATH=/opt/postbus/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    POSTBUS_HEALTH_PORT=8080
RUN groupadd --system --gid 10001 postbus \
    && useradd --system --uid 10001 --gid postbus --no-create-home --shell /usr/sbin/nologin postbus
COPY --from=builder /opt/postbus /opt/postbus
WORKDIR /app
USER 10001:10001
EXPOSE 8080
# Slim images have no curl: probe /healthz with the standard library. urlopen raises on a non-2xx answer.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('POSTBUS_HEALTH_PORT', '8080') + '/healthz', timeout=3)"]
ENTRYPOINT ["postbus"]
CMD ["worker"]
