#!/usr/bin/env bash
# Copies this checkout to every worker and installs it with TPU jax.
source "$(dirname "$0")/common.sh"
root="$(cd "$(dirname "$0")/.." && pwd)"
tar czf /tmp/archer_jax_src.tgz -C "$root" --exclude=.git --exclude='.ci-venv' --exclude='*.egg-info' .
gcloud_tpu scp /tmp/archer_jax_src.tgz "$TPU_NAME":/tmp/ --worker=all
gcloud_tpu ssh "$TPU_NAME" --worker=all --command="
  set -e; mkdir -p ~/$REPO_DIR && tar xzf /tmp/archer_jax_src.tgz -C ~/$REPO_DIR &&
  cd ~/$REPO_DIR && python3 -m venv ~/venv && . ~/venv/bin/activate &&
  pip install -q --upgrade pip && pip install -q -r requirements-tpu.txt"
