# syntax=docker/dockerfile:1
# ragward — one image for every `ragward` subcommand:
#   docker run ragward:local serve | gateway | rag-core | consumer metrics|alerts|audit | ingest --sample | token ...
# Build: docker build -t ragward:local .      (see README.md)
ARG PYTHON_IMAGE=python:3.11-slim

ARG RUST_IMAGE=rust:1-slim

# --- rust: the toolchain for the native PII scanner (native/), copied into the builder ----------
FROM ${RUST_IMAGE} AS rust

# --- builder: a wheel of ragward and a virtualenv with it and its dependencies ------------------
FROM ${PYTHON_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never
RUN pip install --no-cache-dir uv==0.13.9
WORKDIR /src

# Dependencies first (their own layer, rebuilt only when the lock changes): exactly the
# runtime part of uv.lock, hashes checked; no resolution happens in the image.
COPY pyproject.toml uv.lock README.md ./
RUN --mount=type=cache,target=/root/.cache/uv \
    uv venv /opt/ragward --python /usr/local/bin/python \
 && uv export --frozen --no-default-groups --no-emit-project --quiet --output-file /tmp/requirements.txt \
 && uv pip install --python /opt/ragward/bin/python --require-hashes --requirement /tmp/requirements.txt

# The native PII scanner: a wheel built by maturin with cargo; gcc builds the bundled PCRE2
# (Debian's gcc of the base image's release: a build tool, not shipped, so not pinned).
COPY --from=rust /usr/local/cargo /usr/local/cargo
COPY --from=rust /usr/local/rustup /usr/local/rustup
ENV CARGO_HOME=/usr/local/cargo RUSTUP_HOME=/usr/local/rustup PATH=/usr/local/cargo/bin:$PATH
# hadolint ignore=DL3008
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev \
 && rm -rf /var/lib/apt/lists/*
COPY native ./native
RUN --mount=type=cache,target=/root/.cache/uv --mount=type=cache,target=/usr/local/cargo/registry \
    uv build --wheel --out-dir /wheels ./native \
 && uv pip install --python /opt/ragward/bin/python --no-deps /wheels/ragward_pii-*.whl

# Then the project itself, as a wheel (no editable install, no source tree in the image).
COPY gateway ./gateway
COPY rag_core ./rag_core
COPY telemetry ./telemetry
COPY alerting ./alerting
COPY ragward ./ragward
RUN --mount=type=cache,target=/root/.cache/uv \
    uv build --wheel --out-dir /wheels . \
 && uv pip install --python /opt/ragward/bin/python --no-deps /wheels/ragward-*.whl \
 && /opt/ragward/bin/ragward --help >/dev/null \
 && /opt/ragward/bin/python -c "from gateway.pii import default_scanner as d; assert d().engine == 'native'"

# --- runtime: slim Python, the venv, a non-root user ---------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="ragward" \
      org.opencontainers.image.description="Production front door and flight recorder for LlamaIndex RAG services" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PATH=/opt/ragward/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    RAGWARD_HOST=0.0.0.0 \
    RAGWARD_DATA_DIR=/data
# Numeric uid/gid so Kubernetes' runAsNonRoot can verify them without /etc/passwd.
RUN groupadd --system --gid 10001 ragward \
 && useradd --system --uid 10001 --gid ragward --no-create-home --home-dir /data \
            --shell /usr/sbin/nologin ragward \
 && install -d -o ragward -g ragward -m 0750 /data
COPY --from=builder /opt/ragward /opt/ragward
USER 10001:10001
WORKDIR /data
# 8000 gateway / serve, 8001 rag-core, 9100 consumers (/metrics, /health, /ready, /dashboard).
EXPOSE 8000 8001 9100
# No curl in slim: Python asks /health on the port of whichever server this container runs
# (the same env vars the servers read, so a changed port is followed).
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import os, sys, urllib.request\nports = {os.environ.get(k, d) for k, d in (('RAGWARD_PORT', '8000'), ('RAGWARD_RAG_CORE_PORT', '8001'), ('RAGWARD_CONSUMER_PORT', '9100'))}\nfor port in sorted(ports):\n    try:\n        urllib.request.urlopen(f'http://127.0.0.1:{port}/health', timeout=2)\n        sys.exit(0)\n    except OSError:\n        pass\nsys.exit(1)"]
ENTRYPOINT ["ragward"]
CMD ["serve"]
