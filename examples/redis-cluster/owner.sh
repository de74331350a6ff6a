#!/usr/bin/env bash
# Prints the troupe name (redis-N) of the master that holds key $2, asking the node on port $1.
# Node N listens on 7100 + N (the spec's fixed_ports).
set -euo pipefail
port=$1 key=$2
slot=$(redis-cli -p "$port" cluster keyslot "$key")
redis-cli -p "$port" cluster nodes | awk -v s="$slot" '
  $3 ~ /master/ && $3 !~ /fail/ {
    for (i = 9; i <= NF; i++) {
      n = split($i, r, "-"); lo = r[1]; hi = (n == 2 ? r[2] : r[1])
      if (s + 0 >= lo + 0 && s + 0 <= hi + 0) { split($2, a, "[:@]"); print "redis-" (a[2] - 7100) }
    }
  }'
