#!/usr/bin/env bash
# Drives a detached etcd cluster from a shell script only: kill the leader, see another take
# over with its failover time recorded, write through the new leader, bring the old one back
# and read the write from it, then tear down and check that no process is left.
# Usage: failover.sh SPEC   (with `troupe` on PATH and TROUPE_STATE_DIR set)
set -euo pipefail
spec=$1
fail() { echo "FAIL: $*" >&2; troupe down --force >/dev/null 2>&1 || true; exit 1; }

troupe up "$spec" --detach >/dev/null
eval "$(troupe env)"
pids="$TROUPE_SUPERVISOR_PID $TROUPE_MAIN_1_PID $TROUPE_MAIN_2_PID $TROUPE_MAIN_3_PID"

leader=$(troupe wait leader --timeout 10s)
[ -n "$leader" ] || fail "no leader"
# The leader may change between the two commands (elections every 100 ms on a loaded machine):
# what counts is that `kill main:leader` names the one it killed.
killed=$(troupe kill main:leader)
old=${killed#killed }
[ "$killed" = "killed $old" ] && [ -n "$old" ] || fail "kill main:leader said '$killed'"
new=$(troupe wait leader --timeout 10s)
[ "$new" != "$old" ] || fail "$old still leads after being killed"
troupe status | grep -q "failover: $old (kill) -> $new in " || fail "no failover time recorded: $(troupe status)"

var() { local v="TROUPE_$(echo "$1" | tr 'a-z-' 'A-Z_')_$2"; echo "${!v}"; }
tls=(--cacert="$TROUPE_CA" --cert="$(var "$new" CLIENT_CERT)" --key="$(var "$new" CLIENT_KEY)")
etcdctl --endpoints="$(var "$new" CLIENT_URL)" "${tls[@]}" put written-during-failover yes >/dev/null \
  || fail "cannot write through the new leader $new"

troupe start "$old" >/dev/null
got=$(etcdctl --endpoints="$(var "$old" CLIENT_URL)" "${tls[@]}" get written-during-failover --print-value-only)
[ "$got" = "yes" ] || fail "$old came back without the write (got '$got')"

troupe restart "$new" >/dev/null
got=$(etcdctl --endpoints="$(var "$new" CLIENT_URL)" "${tls[@]}" get written-during-failover --print-value-only)
[ "$got" = "yes" ] || fail "$new lost its data across a restart (got '$got')"

troupe down >/dev/null
if troupe env >/dev/null 2>&1; then fail "troupe env still answers after down"; fi
for p in $pids; do
  if kill -0 "$p" 2>/dev/null && ! grep -q '^State:.Z' "/proc/$p/status" 2>/dev/null; then
    fail "process $p survived troupe down"
  fi
done
echo PASS
