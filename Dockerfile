# syntax=docker/dockerfile:1
# Postbus worker image: `azd deploy` builds it in ACR (remoteBuild). Entry point: `postbus worker`.
# The builder stage has the compiler (python-qpid-proton builds from an sdist); the runtime stage has only the venv.


FROM python:3.11-slim-bookworm AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev libssl-dev pkg-config \
    && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/postbus
WORKDIR /src
# Only what `pip install .` needs: the metadata, the kernel and the folders it links in as
# postbus.worker, postbus.producers and postbus.emulators (templates ship as package data).
COPY pyproject.toml README.md ./
COPY postbus ./postbus
COPY producers ./producers
COPY worker ./worker
COPY emulators ./emulators
RUN /opt/postbus/bin/pip install --no-cache-dir . \
    && /opt/postbus/bin/python -m compileall -q /opt/postbus/lib

FROM python:3.11-slim-bookworm AS runtime
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
