#!/usr/bin/env bash
# Deletes the TPU VM (QUEUED=1: the queued resource QR_NAME and its TPU VM). Checkpoints
# in a gs:// workdir stay; everything on the workers (code, ~/archer_logs) goes. Stop a
# live run first so it writes a final checkpoint: launch/stop.sh.
#   launch/teardown.sh
#   QUEUED=1 launch/teardown.sh
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

if [[ $QUEUED == 1 ]]; then
  say "deleting queued resource $QR_NAME and its TPU VM $TPU_NAME ($ZONE, $PROJECT)"
  gcloud_qr delete "$QR_NAME" --force --quiet   # --force: its node goes too
else
  say "deleting TPU VM $TPU_NAME ($ZONE, $PROJECT)"
  gcloud_tpu delete "$TPU_NAME" --quiet
fi
