#!/usr/bin/env bash
# Deletes the TPU VM. Checkpoints in a gs:// workdir stay.
source "$(dirname "$0")/common.sh"
gcloud_tpu delete "$TPU_NAME" --quiet
