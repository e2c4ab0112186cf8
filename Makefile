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

# The native PII scanner (native/, Rust) is built with cargo from rustup; a fresh
# rustup puts it in ~/.cargo/bin, which a non-login shell may not have on PATH.
export PATH := $(HOME)/.cargo/bin:$(PATH)
NATIVE_SRC := native/Cargo.toml native/Cargo.lock native/pyproject.toml native/ragward_pii.pyi \
	$(wildcard native/src/*.rs)

$(STAMP): pyproject.toml $(NATIVE_SRC)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install -q --upgrade pip uv
	$(VENV)/bin/uv pip install --python $(PY) -q -e '.[test,dev]'
	@command -v cargo >/dev/null || { echo "error: the native PII scanner needs a Rust toolchain: install rustup (https://rustup.rs), then run make again" >&2; exit 2; }
	@echo "building the native PII scanner (native/, cargo --release)"
	$(VENV)/bin/uv pip install --python $(PY) -q --reinstall-package ragward-pii ./native
	@touch $(STAMP)

.PHONY: install
install: $(STAMP) ## create .venv and install ragward with its test and dev extras

.PHONY: system-deps
system-deps: ## install the Debian packages the tests use (redis, kcat, promtool, chromium, wrk, postgresql)
	@deploy/install-system-deps.sh

.PHONY: demo
demo: $(STAMP) ## ingest the sample corpus and run `ragward serve` with a dev token
	@mkdir -p .ragward
	@test -s $(DEMO_SECRET_FILE) || $(PY) -c "import secrets; print(secrets.token_urlsafe(48))" > $(DEMO_SECRET_FILE)
	@RAGWARD_JWT_SECRET=$$(cat $(DEMO_SECRET_FILE)) $(RAGWARD) --log-format console ingest --sample
	@RAGWARD_JWT_SECRET=$$(cat $(DEMO_SECRET_FILE)) deploy/demo.sh

.PHONY: test
test: $(STAMP) system-deps ## start real Kafka and Redis, run the whole suite, stop them
	@$(PY) -m ragward.devservices fetch
	cargo test --quiet --release --manifest-path native/Cargo.toml
	RAGWARD_REQUIRE_SERVICES=1 $(PY) -m pytest $(PYTEST_ARGS)

.PHONY: services
services: $(STAMP) ## start local Kafka (KRaft) and Redis; prints the exports
	@$(PY) -m ragward.devservices up

.PHONY: services-down
services-down: ## stop what `make services` started
	@test ! -x $(PY) || $(PY) -m ragward.devservices down

.PHONY: lint
lint: $(STAMP) ## ruff and mypy; rustfmt and clippy for native/
	$(VENV)/bin/ruff check gateway rag_core telemetry alerting ragward tests bench
	$(VENV)/bin/mypy
	cargo fmt --check --manifest-path native/Cargo.toml
	cargo clippy --quiet --release --manifest-path native/Cargo.toml -- -D warnings

.PHONY: eval
eval: $(STAMP) ## retrieval quality of the local backend on the evaluation set
	$(PY) -m rag_core.evaluate

.PHONY: bench
bench: $(STAMP) system-deps ## run every benchmark in bench/ and print its figures
	@$(VENV)/bin/uv pip install --python $(PY) -q -e '.[test,dev,bench]'
	@for script in bench/*.py; do echo "== $$script"; $(PY) $$script || exit 1; done

.PHONY: clean
clean: services-down ## remove the venv and local data
	rm -rf $(VENV) .ragward .pytest_cache
