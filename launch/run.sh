#!/usr/bin/env bash
# Runs the trainer on every worker at once (multi-host: --distributed).
#   WORKDIR=gs://my-bucket/gc1 ./run.sh --config=guess_city.py --config.archer.iterations=300
# The same command again resumes from the workdir's last checkpoint.
source "$(dirname "$0")/common.sh"
: "${WORKDIR:?set WORKDIR (a gs:// path shared by all workers, or a local path on one host)}"
args=$(printf '%q ' "$@")
gcloud_tpu ssh "$TPU_NAME" --worker=all --command="
  cd ~/$REPO_DIR && . ~/venv/bin/activate &&
  python -m experiments.run --distributed --workdir=$WORKDIR $args 2>&1 | tee -a ~/archer_run.log"
