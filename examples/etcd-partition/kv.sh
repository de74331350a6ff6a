#!/usr/bin/env bash
# kv.sh NODE ARGS...: etcdctl against one member, with its client certificate when TLS is on.
# troupe puts every endpoint and certificate path in the environment (see `troupe env`).
set -euo pipefail
node=$(echo "$1" | tr 'a-z-' 'A-Z_'); shift
url="TROUPE_${node}_CLIENT_URL"
flags=(--endpoints="${!url}" --dial-timeout=2s --command-timeout="${KV_TIMEOUT:-5s}")
if [ -n "${TROUPE_CA:-}" ]; then
  cert="TROUPE_${node}_CLIENT_CERT"; key="TROUPE_${node}_CLIENT_KEY"
  flags+=(--cacert="$TROUPE_CA" --cert="${!cert}" --key="${!key}")
fi
exec etcdctl "${flags[@]}" "$@"
