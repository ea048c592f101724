#!/usr/bin/env bash
# Settings shared by the launch scripts; override any of them in the environment.
#   TPU_NAME=archer-v4 ZONE=us-central2-b ACCELERATOR=v4-32 ./create.sh
set -euo pipefail
: "${TPU_NAME:=archer-jax}"            # TPU VM name
: "${ZONE:=us-central2-b}"             # zone with the accelerator type below
: "${ACCELERATOR:=v4-8}"               # e.g. v4-8 (one host), v4-32 (a 4-host pod), v5litepod-8
: "${RUNTIME:=tpu-ubuntu2204-base}"    # TPU VM image
: "${PROJECT:=$(gcloud config get-value project 2>/dev/null)}"
: "${REPO_DIR:=archer_jax}"            # where the code lives on each worker (home-relative)
gcloud_tpu() { gcloud compute tpus tpu-vm "$@" --zone="$ZONE" --project="$PROJECT"; }
