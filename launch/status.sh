#!/usr/bin/env bash
# The TPU's state (QUEUED=1: the queued resource's too) and, on every worker, the run:
# alive (with its log's last line), finished (its exit code), or gone without one.
#   launch/status.sh                 # the last run launched on each worker
#   RUN_NAME=gc1 launch/status.sh    # a given run (WORKDIR=... also names it)
# Exits 1 when the TPU is not READY (QUEUED=1: the queued resource not ACTIVE).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

if [[ $QUEUED == 1 ]]; then
  state=$(qr_state)
  echo "queued resource $QR_NAME: ${state:-unknown}"
  if [[ $state != ACTIVE ]]; then exit 1; fi
fi
state=$(tpu_state)
echo "TPU $TPU_NAME ($ZONE, $PROJECT): ${state:-unknown}"
if [[ $state != READY ]]; then exit 1; fi

remote_ssh all "$(remote_prelude; cat <<'EOF'
if alive; then
  echo "worker $w: $run RUNNING (pid $pid); last log line: $(tail -n 1 "$log" 2>/dev/null)"
elif [ -f "$exitf" ]; then
  how="finished,"; [ -f "$stoppedf" ] && how="stopped by launch/stop.sh,"
  echo "worker $w: $run $how exit code $(cat "$exitf") (log ~/$LOG_DIR/$run.log)"
elif [ -n "$pid" ]; then
  echo "worker $w: $run DIED without an exit code (killed: out of memory, reboot?); see ~/$LOG_DIR/$run.log"
else
  echo "worker $w: $run has not started here (no ~/$LOG_DIR/$run.pid)"
fi
EOF
)"
