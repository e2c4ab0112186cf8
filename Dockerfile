# ragward — one image for every `ragward` subcommand:
#   docker run ragward:local serve | gateway | rag-core | consumer metrics|alerts|audit | ingest --sample | token ...
# Build: make image (docker build -t ragward:local .), or with no registry at all:
# make image-offline (deploy/image-offline.sh). See README.md "Build the image".
# No `# syntax=` line: that would pull the Dockerfile frontend from a registry; the engine's
# built-in BuildKit frontend (Docker 20.10+) has everything used here.
ARG PYTHON_IMAGE=python:3.11-slim
ARG RUST_IMAGE=rust:1-slim
# Where the wheels and the model files come from: wheelhouse-build makes them here, from the
# package indexes and Maven Central; wheelhouse-context takes them from the build context, which
# is then a wheelhouse made by deploy/wheelhouse.py on a connected host (the air-gapped build).
# Both are made by the same script from uv.lock and rag_core/models.py's pins and are installed
# below by the same steps.
ARG WHEELHOUSE=wheelhouse-build

# --- rust: the toolchain for the native PII scanner (native/), copied into wheelhouse-build -----
FROM ${RUST_IMAGE} AS rust

# --- wheelhouse-build: exactly the runtime part of uv.lock, the bge models, ragward, ragward-pii --
FROM ${PYTHON_IMAGE} AS wheelhouse-build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never
RUN pip install --no-cache-dir uv==0.13.9
# gcc builds the native scanner's bundled PCRE2 (and any locked sdist without a wheel):
# Debian's gcc of the base image's release, a build tool that is not shipped, so not pinned.
# hadolint ignore=DL3008
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev \
 && rm -rf /var/lib/apt/lists/*
COPY --from=rust /usr/local/cargo /usr/local/cargo
COPY --from=rust /usr/local/rustup /usr/local/rustup
ENV CARGO_HOME=/usr/local/cargo RUSTUP_HOME=/usr/local/rustup PATH=/usr/local/cargo/bin:$PATH
WORKDIR /src
# Dependencies first (their own layer, rebuilt only when the lock changes).
COPY pyproject.toml uv.lock README.md ./
COPY deploy/wheelhouse.py ./deploy/
RUN --mount=type=cache,target=/root/.cache/pip \
    python deploy/wheelhouse.py locked /wheelhouse
# The models (228 MB, fetched by rag_core.models with its pinned hashes): only the files the fetch
# reads, so that a change elsewhere in the sources does not download them again.
COPY rag_core/__init__.py rag_core/models.py ./rag_core/
COPY ragward/__init__.py ragward/errors.py ./ragward/
RUN python deploy/wheelhouse.py models /wheelhouse
COPY native ./native
COPY gateway ./gateway
COPY rag_core ./rag_core
COPY telemetry ./telemetry
COPY alerting ./alerting
COPY ragward ./ragward
RUN --mount=type=cache,target=/root/.cache/uv --mount=type=cache,target=/usr/local/cargo/registry \
    python deploy/wheelhouse.py project /wheelhouse

# --- wheelhouse-context: the build context is the wheelhouse (deploy/image-offline.sh) ----------
FROM scratch AS wheelhouse-context
COPY . /wheelhouse/

FROM ${WHEELHOUSE} AS wheelhouse

# --- builder: a virtualenv with exactly the wheelhouse, from nothing else ------------------------
FROM ${PYTHON_IMAGE} AS builder
# --no-index: nothing but the wheelhouse; --require-hashes: every wheel as pinned by
# deploy/wheelhouse.py (uv.lock's own hashes for downloaded wheels); --no-deps: nothing is
# resolved here. Dependencies and project are two layers (a source change reinstalls only the
# second); the venv's pip goes at the end, so the shipped venv holds no installer.
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PIP_NO_INDEX=1
RUN --mount=type=bind,from=wheelhouse,source=/wheelhouse/locked,target=/wheelhouse \
    python3 -m venv /opt/ragward \
 && /opt/ragward/bin/pip install --find-links /wheelhouse --require-hashes --no-deps \
        --requirement /wheelhouse/requirements.txt
RUN --mount=type=bind,from=wheelhouse,source=/wheelhouse/project,target=/wheelhouse \
    /opt/ragward/bin/pip install --find-links /wheelhouse --require-hashes --no-deps \
        --requirement /wheelhouse/requirements.txt \
 && /opt/ragward/bin/pip uninstall --yes --quiet pip \
 && /opt/ragward/bin/ragward --help >/dev/null \
 && /opt/ragward/bin/python -c "from gateway.pii import default_scanner as d; assert d().engine == 'native'"

# --- models: the files the wheelhouse's SHA256SUMS lists, each checked; root's, read-only ----------
FROM ${PYTHON_IMAGE} AS models
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
WORKDIR /wheelhouse
RUN --mount=type=bind,from=wheelhouse,source=/wheelhouse/models,target=/wheelhouse \
    sha256sum --check --strict --quiet SHA256SUMS \
 && install -d -m 0755 /opt/ragward/models \
 && cut -c67- SHA256SUMS | xargs install -m 0444 -t /opt/ragward/models

# --- runtime: slim Python, the venv, the models, a non-root user ---------------------------------
FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="ragward" \
      org.opencontainers.image.description="Production front door and flight recorder for LlamaIndex RAG services" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PATH=/opt/ragward/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    RAGWARD_HOST=0.0.0.0 \
    RAGWARD_DATA_DIR=/data \
    RAGWARD_MODEL_DIR=/opt/ragward/models
# Numeric uid/gid so Kubernetes' runAsNonRoot can verify them without /etc/passwd.
RUN groupadd --system --gid 10001 ragward \
 && useradd --system --uid 10001 --gid ragward --no-create-home --home-dir /data \
            --shell /usr/sbin/nologin ragward \
 && install -d -o ragward -g ragward -m 0750 /data
# The models first: their layer stays cached while the venv's changes with every source change.
COPY --from=models /opt/ragward/models /opt/ragward/models
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
