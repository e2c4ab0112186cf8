#!/usr/bin/env bash
# The air-gapped image build: the same image as `make image`, with no image registry and no
# package index reached by the image build itself.
#
#   deploy/image-offline.sh [TAG]        (make image-offline; TAG defaults to ragward:local)
#
# 1. A wheelhouse made on this host from uv.lock (deploy/wheelhouse.py): the locked runtime
#    dependencies, hash-checked, the default embedding's bge model files (fetched from Maven
#    Central by rag_core.models, checked against its pinned SHA-256s) and the ragward and native
#    PII wheels built here by uv and cargo. Kept in $WHEELHOUSE_DIR and remade only when the lock
#    (or a model pin) changes (the two project wheels are rebuilt every time, byte-identical for
#    the same sources).
# 2. A Debian 12 base image made from Debian packages with mmdebstrap (from this host's own apt
#    sources, so a site mirror is used as it is) and `docker import`, kept under a tag that
#    names its package list; REFRESH_BASE=1 makes it again (to take security updates).
# 3. The Dockerfile with PYTHON_IMAGE=that base and WHEELHOUSE=wheelhouse-context: the build
#    context is the wheelhouse alone, and pip installs from it with --no-index --require-hashes.
#
# Needs: a Docker engine with BuildKit (20.10+), mmdebstrap, cargo, and Debian 12's python3
# with venv (deploy/install-system-deps.sh image installs the packages). Environment: DOCKER
# (the client), WHEELHOUSE_DIR (where the wheelhouse is kept).
set -euo pipefail
cd "$(dirname "$0")/.."
source deploy/docker-client.sh

tag=${1:-ragward:local}
cache=$HOME/.cache/ragward
wheelhouse=${WHEELHOUSE_DIR:-$cache/wheelhouse}
# The base: Debian 12's python3 (3.11, the host's too, so host-built wheels fit), venv for the
# builder stage, passwd for the runtime's user, CA certificates for outbound TLS.
base_packages=python3,python3-venv,passwd,ca-certificates
suite=bookworm

build_line=$(build_command)  # an assignment, so set -e stops here when there is none
read -r -a build <<<"$build_line"
docker=${build[0]}

apt_sources() {
  local file
  for file in /etc/apt/sources.list.d/debian.sources /etc/apt/sources.list; do
    [ -s "$file" ] && { echo "$file"; return; }
  done
  echo "error: no Debian apt sources on this host for mmdebstrap" >&2
  exit 2
}

base_image() {
  local sources key image tarball
  sources=$(apt_sources)
  key=$(printf '%s\n' "$suite" "$base_packages" "$(cat "$sources")" | sha256sum | cut -c1-12)
  image=ragward-base:debian12-$key
  if [ -z "${REFRESH_BASE:-}" ] && "$docker" image inspect "$image" >/dev/null 2>&1; then
    echo "$image"; return
  fi
  command -v mmdebstrap >/dev/null || { echo "error: mmdebstrap missing (deploy/install-system-deps.sh image)" >&2; exit 2; }
  tarball=$(mktemp --suffix=.tar)
  trap 'rm -f "$tarball"' RETURN
  echo "making $image from Debian packages ($base_packages)" >&2
  mmdebstrap --quiet --variant=minbase --include="$base_packages" \
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-exclude=/usr/share/info/*' \
    "$suite" "$tarball" "$sources" >&2
  "$docker" import --change 'ENV LANG=C.UTF-8' --change 'CMD ["python3"]' \
    --message "Debian 12 minbase + $base_packages (mmdebstrap)" "$tarball" "$image" >/dev/null
  echo "$image"
}

# The wheelhouse is made by the base's own Python: Debian 12's python3 (environment markers
# in the lock depend on the exact version), in a venv with the pinned uv.
wheelhouse_python() {
  local venv=$cache/wheelhouse-python uv_version
  uv_version=$(sed -nE 's/^required-version = "==(.+)"/\1/p' pyproject.toml)
  if [ ! -x "$venv/bin/uv" ] || [ "$("$venv/bin/uv" --version | cut -d' ' -f2)" != "$uv_version" ]; then
    /usr/bin/python3 -m venv --clear "$venv" >&2
    "$venv/bin/pip" install --quiet --disable-pip-version-check "uv==$uv_version" >&2
  fi
  echo "$venv/bin/python"
}

base=$(base_image)
py=$(wheelhouse_python)
want=$("$py" -c 'import platform; print(platform.python_version())')
have=$("$docker" run --rm --network host --entrypoint python3 "$base" -c 'import platform; print(platform.python_version())')
if [ "$want" != "$have" ]; then
  echo "error: the base has Python $have but this host's /usr/bin/python3 is $want: make the base again (REFRESH_BASE=1) or update the host" >&2
  exit 2
fi
"$py" deploy/wheelhouse.py all "$wheelhouse"
# The context is the wheelhouse alone: its three parts, nothing of the source tree.
context=$(mktemp -d)
trap 'rm -rf "$context"' EXIT
parts=("$wheelhouse/locked" "$wheelhouse/models" "$wheelhouse/project")
cp -al "${parts[@]}" "$context/" 2>/dev/null || cp -a "${parts[@]}" "$context/"
DOCKER_BUILDKIT=1 "${build[@]}" --network host --pull=false \
  --build-arg PYTHON_IMAGE="$base" --build-arg WHEELHOUSE=wheelhouse-context \
  --file Dockerfile --tag "$tag" "$context"
echo "built $tag (base $base, wheels from $wheelhouse)" >&2
