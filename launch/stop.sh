#!/usr/bin/env bash
# Stops the run on every worker with SIGTERM: the trainer writes a final checkpoint at its
# next safe point and exits (the same command via run.sh resumes from it). Then waits up
# to STOP_WAIT_S (600) seconds per worker for the run to end, and exits 1 if it has not
# (tear down only once it has: launch/status.sh).
#   launch/stop.sh                   # the last run launched on each worker
#   RUN_NAME=gc1 launch/stop.sh
#   STOP_WAIT_S=0 launch/stop.sh     # signal only, do not wait
# A second SIGTERM would end the trainer at once, without the checkpoint, so a run already
# signalled is not signalled again unless FORCE=1.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
: "${FORCE:=0}"

remote_ssh all "$(remote_prelude; remote_vars STOP_WAIT_S FORCE; cat <<'EOF'
if ! alive; then
  if [ -f "$exitf" ]; then echo "worker $w: $run already ended, exit code $(cat "$exitf")"
  else echo "worker $w: $run is not running"; fi
  exit 0
fi
if [ -f "$stoppedf" ] && [ "$FORCE" != 1 ]; then
  echo "worker $w: $run was sent SIGTERM at $(cat "$stoppedf"); not again (FORCE=1: end it at once, no checkpoint)"
else
  kill -TERM "$pid" && date -u +%FT%TZ > "$stoppedf" || exit 1
  echo "worker $w: sent SIGTERM to $run (pid $pid)"
fi
[ "$STOP_WAIT_S" -gt 0 ] || exit 0
deadline=$((SECONDS + STOP_WAIT_S))
while alive && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.5; done
if alive; then
  echo "worker $w: $run still running after ${STOP_WAIT_S}s (writing its checkpoint?): launch/status.sh" >&2
  exit 1
fi
for _ in 1 2 3 4 5 6 7 8 9 10; do [ -f "$exitf" ] && break; sleep 0.2; done   # the job writes it just after
echo "worker $w: $run ended, exit code $(cat "$exitf" 2>/dev/null || echo unknown)"
EOF
)"
