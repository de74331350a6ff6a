#!/bin/sh
# Builds the image `troupe-nats:local` from the host's nats-server (Debian's `nats-server`
# package) and the shared libraries it links, FROM scratch: nothing is pulled from a registry.
#
#   examples/nats-swarm/build-image.sh [TAG]      # default troupe-nats:local
#
# The image holds /usr/sbin/nats-server, its libraries (from `ldd`) and an empty /tmp; the
# spec's `binary = "/usr/sbin/nats-server"` is the program inside it.
set -eu
tag=${1:-troupe-nats:local}
bin=$(command -v nats-server || true)
if [ -z "$bin" ]; then
    echo "build-image.sh: nats-server not found (hint: apt-get install nats-server)" >&2
    exit 1
fi
ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
mkdir -p "$ctx/root/usr/sbin" "$ctx/root/tmp"
cp "$bin" "$ctx/root/usr/sbin/nats-server"
# Every library the binary needs, at the path the loader looks for it.
for lib in $(ldd "$bin" | grep -o '/[^ ]*'); do
    mkdir -p "$ctx/root$(dirname "$lib")"
    cp -L "$lib" "$ctx/root$lib"
done
cat > "$ctx/Dockerfile" <<'DOCKERFILE'
FROM scratch
COPY root/ /
ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
LABEL troupe.example=nats-swarm
ENTRYPOINT ["/usr/sbin/nats-server"]
DOCKERFILE
DOCKER_BUILDKIT=0 docker build -q -t "$tag" "$ctx" >/dev/null 2>"$ctx/err" || { cat "$ctx/err" >&2; exit 1; }
echo "$tag"
