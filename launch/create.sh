#!/usr/bin/env bash
# Creates the TPU VM (all workers of a pod slice). Add SPOT=1 for a preemptible VM:
# runs resume from their last checkpoint, and SIGTERM writes a final one first.
source "$(dirname "$0")/common.sh"
extra=()
[[ "${SPOT:-0}" == 1 ]] && extra+=(--spot)
gcloud_tpu create "$TPU_NAME" --accelerator-type="$ACCELERATOR" --version="$RUNTIME" "${extra[@]}"
