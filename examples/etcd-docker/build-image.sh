#!/usr/bin/env bash
# build-image.sh [IMAGE]: builds IMAGE (default troupe-etcd:local) from Debian's etcd-server and
# etcd-client packages, offline: no registry and no base image. The image holds etcd, etcdctl
# (for health checks) and the shared libraries they load, copied from the host's installed
# packages, `FROM scratch`. Building again with the same files changes nothing.
set -euo pipefail
image=${1:-troupe-etcd:local}
for pkg in etcd-server etcd-client; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    echo "build-image.sh: Debian's $pkg package is not installed (hint: apt-get install etcd-server etcd-client, or run .ci/setup)" >&2
    exit 1
  fi
done
command -v docker >/dev/null || { echo "build-image.sh: no docker client (hint: apt-get install docker.io)" >&2; exit 1; }
ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
root=$ctx/rootfs
mkdir -p "$root/tmp" "$root/etc"
chmod 1777 "$root/tmp"
# The programs, from the packages' own file lists, and every library they load.
bins=$(dpkg -L etcd-server etcd-client | grep -E '^/usr/bin/etcd(ctl)?$')
for b in $bins; do
  cp --parents -L "$b" "$root"
  ldd "$b" | awk '/=> \//{print $3} /^[ \t]*\/[^ ]+ \(/{print $1}' | while read -r lib; do
    cp --parents -L "$lib" "$root"
  done
done
# A user table, so the numeric user troupe runs a node as has a name.
printf 'root:x:0:0:root:/:/usr/bin/etcd\nnobody:x:65534:65534:nobody:/:/usr/bin/etcd\n' > "$root/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' > "$root/etc/group"
version=$(/usr/bin/etcd --version | awk '/etcd Version/{print $3}')
cat > "$ctx/Dockerfile" <<DOCKERFILE
FROM scratch
COPY rootfs/ /
LABEL org.opencontainers.image.title="etcd from Debian's etcd-server package" \
      org.opencontainers.image.version="$version" \
      troupe.example="etcd-docker"
ENTRYPOINT ["/usr/bin/etcd"]
DOCKERFILE
# The classic builder: FROM scratch needs no registry.
if ! DOCKER_BUILDKIT=0 docker build --tag "$image" "$ctx" >"$ctx/build.log" 2>&1; then
  cat "$ctx/build.log" >&2
  exit 1
fi
echo "built $image (etcd $version): $(docker image inspect --format '{{.Size}}' "$image") bytes"
