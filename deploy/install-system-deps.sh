#!/usr/bin/env bash
# Installs the Debian packages ragward's tests talk to, when they are missing.
# Java and Maven (for Kafka) and PostgreSQL are expected from the base machine;
# this script adds what a fresh Debian machine lacks.
#   deploy/install-system-deps.sh          what `make test` needs
#   deploy/install-system-deps.sh image    and what `make test-image` needs: Docker's engine,
#                                          mmdebstrap, Debian's python3-venv (deploy/image-offline.sh)
set -euo pipefail

declare -A needs=(
  [redis-server]=redis-server
  [redis-cli]=redis-tools  # joins the test Redis Cluster (redis-cli --cluster create)
  [kcat]=kcat
  [promtool]=prometheus
  [prometheus-alertmanager]=prometheus-alertmanager  # alertmanager and amtool
  [chromium]=chromium
  [wrk]=wrk
)
if [ "${1:-}" = image ]; then
  needs[dockerd]=docker.io
  needs[mmdebstrap]=mmdebstrap
fi
missing=()
# The air-gapped build makes its wheelhouse with Debian's own python3 (the base image's).
if [ "${1:-}" = image ] && ! dpkg -s python3-venv >/dev/null 2>&1; then missing+=(python3-venv); fi
for cmd in "${!needs[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || missing+=("${needs[$cmd]}")
done
# PostgreSQL server binaries for the audit store's PostgreSQL tests
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
for cmd in java mvn; do
  command -v "$cmd" >/dev/null 2>&1 || missing+=("$( [ "$cmd" = java ] && echo openjdk-17-jre-headless || echo maven )")
done
# The deploy tests render kustomizations: with kubectl when the machine has it, else a
# standalone kustomize built from the Go module proxy into ragward's cache.
if ! command -v kubectl >/dev/null 2>&1 && ! command -v kustomize >/dev/null 2>&1 \
   && [ ! -x "$HOME/.cache/ragward/bin/kustomize" ]; then
  if command -v go >/dev/null 2>&1; then
    echo "building kustomize v5.5.0 from the Go module proxy" >&2
    GOBIN="$HOME/.cache/ragward/bin" go install sigs.k8s.io/kustomize/kustomize/v5@v5.5.0
  else
    echo "error: need kubectl, kustomize or Go (to build kustomize)" >&2
    exit 1
  fi
fi

[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
  echo "error: missing system packages: ${missing[*]} (install them with apt-get as root)" >&2
  exit 1
fi
echo "installing Debian packages: ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -q >/dev/null
apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
