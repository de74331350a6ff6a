#!/usr/bin/env bash
# nothing-left.sh PID... HOST:PORT...: fails if any pid is alive or any port still accepts.
set -uo pipefail
status=0
for x in "$@"; do
  case "$x" in
    *:*)
      if timeout 1 bash -c "exec 3<>/dev/tcp/${x%:*}/${x##*:}" 2>/dev/null; then
        echo "port $x still accepts connections"; status=1
      fi ;;
    *)
      if [ -e "/proc/$x" ] && ! grep -q '^State:.Z' "/proc/$x/status" 2>/dev/null; then
        echo "process $x is still running"; status=1
      fi ;;
  esac
done
[ $status -eq 0 ] && echo "nothing left: $# pids and ports checked"
exit $status
