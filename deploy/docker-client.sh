# Sourced by deploy/image.sh and deploy/image-offline.sh: the docker client that builds with
# BuildKit (the Dockerfile's cache and bind mounts need it).
#   build_line=$(build_command); read -r -a build <<<"$build_line"; docker=${build[0]}
# build_command prints the build command (one with the buildx plugin: `buildx build --load`; a
# pre-23 client, which drives the engine's built-in BuildKit itself, e.g. Debian 12's docker.io:
# `build`); $DOCKER, when set, is tried first.

build_command() {
  local candidate version
  for candidate in ${DOCKER:-} "$(command -v docker || true)" /usr/bin/docker; do
    [ -x "$candidate" ] || candidate=$(command -v "$candidate" || true)
    [ -n "$candidate" ] && [ -x "$candidate" ] || continue
    if "$candidate" buildx version >/dev/null 2>&1; then
      echo "$candidate buildx build --load"; return
    fi
    version=$("$candidate" --version | sed -E 's/^Docker version ([0-9]+).*/\1/')
    if [ "$version" -lt 23 ] 2>/dev/null; then
      echo "$candidate build"; return
    fi
  done
  echo "error: no docker client that builds with BuildKit (install docker-buildx, or Debian's docker.io)" >&2
  exit 2
}
