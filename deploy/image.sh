#!/usr/bin/env bash
# The normal image build (make image): the Dockerfile from the public base images, wheels from
# the package indexes and the bge model files from Maven Central (the wheelhouse-build stage),
# the same install steps as the air-gapped build (deploy/image-offline.sh).
#
#   deploy/image.sh [TAG]        (TAG defaults to ragward:local)
#
# Environment: PYTHON_IMAGE and RUST_IMAGE replace the Dockerfile's bases (python:3.11-slim,
# rust:1-slim), e.g. with your registry's copies; DOCKER is the client to try first. The bases
# are checked before the build: one that is neither present nor pullable stops it with the
# reason and the way out (no registry reachable: make image-offline).
set -euo pipefail
cd "$(dirname "$0")/.."
source deploy/docker-client.sh

tag=${1:-ragward:local}
build_line=$(build_command)  # an assignment, so set -e stops here when there is none
read -r -a build <<<"$build_line"
docker=${build[0]}

args=()
for arg in PYTHON_IMAGE RUST_IMAGE; do
  default=$(sed -nE "s/^ARG $arg=(.+)$/\1/p" Dockerfile)
  base=${!arg:-$default}
  [ "$base" = "$default" ] || args+=(--build-arg "$arg=$base")
  "$docker" image inspect "$base" >/dev/null 2>&1 && continue
  echo "pulling the base image $base" >&2
  if ! reason=$("$docker" pull "$base" 2>&1 >/dev/null); then
    echo "error: make image needs the base image $base, which is not present and cannot be pulled:" >&2
    echo "  ${reason//$'\n'/$'\n'  }" >&2
    echo "With no image registry reachable, build with make image-offline (README \"Build the image\"); with a registry of your own, set $arg to its copy." >&2
    exit 2
  fi
done
DOCKER_BUILDKIT=1 "${build[@]}" --pull=false "${args[@]}" --tag "$tag" .
echo "built $tag" >&2
