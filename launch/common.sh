#!/usr/bin/env bash
# Settings and helpers shared by the launch scripts (each of them sources this file; it
# is not meant to be run). Every setting below can be overridden from the environment:
#   TPU_NAME=archer-v4 ZONE=us-central2-b ACCELERATOR=v4-32 launch/create.sh
#
# Typical session (run from anywhere; the scripts find the checkout themselves):
#   launch/create.sh                        # TPU VM (QUEUED=1: a queued resource), waits for READY
#   launch/setup.sh                         # ships this checkout to every worker, installs it
#   WORKDIR=gs://bucket/gc1 launch/run.sh --config=guess_city.py   # detached, on every worker
#   launch/status.sh; launch/logs.sh        # TPU state, run alive / exit code; log tails
#   launch/stop.sh                          # SIGTERM: the trainer writes a final checkpoint
#   launch/teardown.sh                      # deletes the TPU VM (QUEUED=1: the queued resource)
set -euo pipefail

die() { echo "error: $*" >&2; exit 1; }
say() { echo "[launch] $*" >&2; }

# -- the TPU -----------------------------------------------------------------------------
: "${TPU_NAME:=archer-jax}"     # TPU VM (node) name
: "${ZONE:=us-central2-b}"      # a zone that offers ACCELERATOR
: "${ACCELERATOR:=v4-8}"        # v4-8 (one host), v4-32 (4 hosts), v5litepod-8, v5p-8, v6e-8, ...
: "${RUNTIME:=}"                # TPU software version; empty: follows ACCELERATOR (below)
: "${QUEUED:=0}"                # 1: create/delete through a queued resource
: "${QR_NAME:=$TPU_NAME}"       # the queued resource's id (QUEUED=1); its node is TPU_NAME
: "${SPOT:=0}"                  # 1: Spot VM (preemptible; a preempted run resumes from its checkpoint)
: "${RESERVED:=0}"              # 1: use the project's reserved capacity
# -- waiting (create.sh) and stopping (stop.sh) ------------------------------------------
: "${POLL_S:=15}"               # seconds between state polls
: "${TIMEOUT_S:=3600}"          # create.sh gives up waiting for READY / ACTIVE after this long
: "${STOP_WAIT_S:=600}"         # stop.sh waits this long for the final checkpoint (0: no wait)
# -- on the workers (paths relative to the home directory) -------------------------------
: "${REPO_DIR:=archer_jax}"     # the code
: "${VENV:=venv}"               # the virtual environment requirements-tpu.txt goes into
: "${LOG_DIR:=archer_logs}"     # per run: <RUN_NAME>.log, .exit (exit code), .pid, .sh (the job)
: "${WORKER:=all}"              # logs.sh: one worker's number, or all
: "${RUN_NAME:=}"               # run.sh: defaults to the workdir's last component; other
                                # scripts: defaults to the last run launched on each worker

[[ $QUEUED == [01] && $SPOT == [01] && $RESERVED == [01] ]] || die "QUEUED, SPOT and RESERVED take 0 or 1"
if [[ $SPOT == 1 && $RESERVED == 1 ]]; then die "SPOT=1 and RESERVED=1 exclude each other"; fi
[[ $WORKER == all || $WORKER =~ ^[0-9]+$ ]] || die "WORKER=$WORKER: a worker number (0, 1, ...) or all"
for dir in REPO_DIR VENV LOG_DIR; do   # setup.sh replaces ~/$REPO_DIR: never "", "/", ".."
  [[ ${!dir} =~ ^[A-Za-z0-9_][A-Za-z0-9._/-]*$ && ${!dir} != *..* ]] ||
    die "$dir=${!dir}: a folder under the home directory (letters, digits, '.', '_', '-', '/')"
done
[[ $POLL_S =~ ^[0-9.]+$ && $TIMEOUT_S =~ ^[0-9]+$ && $STOP_WAIT_S =~ ^[0-9]+$ ]] ||
  die "POLL_S, TIMEOUT_S and STOP_WAIT_S take a number of seconds"

# The project: PROJECT, else gcloud's default project.
if [[ -z ${PROJECT:-} ]]; then
  PROJECT=$(gcloud config get-value project 2>/dev/null) || PROJECT=""
fi
[[ -n $PROJECT ]] || die "no Google Cloud project: set PROJECT=..., or run: gcloud config set project ..."

# The TPU software version for an accelerator type, as Cloud TPU's "TPU software
# versions" page recommends for JAX (https://cloud.google.com/tpu/docs/runtimes):
# v6e (Trillium) v2-alpha-tpuv6e, v5p v2-alpha-tpuv5, v5e v2-alpha-tpuv5-lite,
# v4 and older tpu-ubuntu2204-base. Anything else: set RUNTIME
# (gcloud compute tpus tpu-vm versions list --zone=...). create.sh resolves it.
runtime_for() {
  case "$1" in
    v2-*|v3-*|v4-*) echo tpu-ubuntu2204-base ;;
    v5litepod-*|v5e-*) echo v2-alpha-tpuv5-lite ;;
    v5p-*) echo v2-alpha-tpuv5 ;;
    v6e-*) echo v2-alpha-tpuv6e ;;
    *) return 1 ;;
  esac
}

# RUN_NAME names the files in LOG_DIR, so it keeps to letters, digits, '.', '_' and '-'.
# run_name_from_workdir gs://bucket/runs/gc1/ -> gc1
run_name_from_workdir() {
  local w=$1
  while [[ $w == */ ]]; do w=${w%/}; done
  w=${w##*/}
  w=${w//[^A-Za-z0-9._-]/-}
  if [[ $w != *[!.]* ]]; then w=""; fi   # "", ".", "..": no name
  echo "$w"
}
if [[ -z $RUN_NAME && -n ${WORKDIR:-} ]]; then RUN_NAME=$(run_name_from_workdir "$WORKDIR"); fi
[[ -z $RUN_NAME || $RUN_NAME =~ ^[A-Za-z0-9_][A-Za-z0-9._-]*$ ]] ||
  die "RUN_NAME=$RUN_NAME: use letters, digits, '.', '_' and '-' (it names files in ~/$LOG_DIR)"

# -- gcloud ------------------------------------------------------------------------------
gcloud_tpu() { gcloud compute tpus tpu-vm "$@" --zone="$ZONE" --project="$PROJECT"; }
gcloud_qr() { gcloud compute tpus queued-resources "$@" --zone="$ZONE" --project="$PROJECT"; }
tpu_state() { gcloud_tpu describe "$TPU_NAME" --format='value(state)'; }
qr_state() { gcloud_qr describe "$QR_NAME" --format='value(state.state)'; }

# remote_ssh WORKER SCRIPT: runs the bash text SCRIPT on one worker (a number) or all.
remote_ssh() { gcloud_tpu ssh "$TPU_NAME" --worker="$1" --command="$2"; }

# remote_vars NAME...: bash text that sets each named variable on the worker to its
# value here (quoted with printf %q, so any value survives the trip intact).
remote_vars() {
  local v
  for v in "$@"; do printf '%s=%q\n' "$v" "${!v}"; done
}

# Bash text that sets w to this worker's number (from the TPU VM's metadata server; its
# hostname if that does not answer).
remote_worker_id() {
  cat <<'EOF'
w=$(curl -sf -m 5 -H 'Metadata-Flavor: Google' \
    http://metadata.google.internal/computeMetadata/v1/instance/attributes/agent-worker-number \
    2>/dev/null || hostname)
EOF
}

# Bash text the per-worker parts of status, logs and stop start with: w (above), d = the
# log folder, run = RUN_NAME or else the last run launched on this worker, its files,
# pid = the trainer's process id, alive = whether it still runs.
remote_prelude() {
  remote_vars LOG_DIR RUN_NAME
  echo 'set -uo pipefail'
  remote_worker_id
  cat <<'EOF'
d=$HOME/$LOG_DIR
run=$RUN_NAME
[ -n "$run" ] || run=$(cat "$d/latest" 2>/dev/null) || run=""
if [ -z "$run" ]; then echo "worker $w: no run launched (no $d/latest)"; exit 0; fi
log=$d/$run.log exitf=$d/$run.exit pidf=$d/$run.pid stoppedf=$d/$run.stopped
pid=$(cat "$pidf" 2>/dev/null) || pid=""
alive() { [ ! -f "$exitf" ] && [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; }
EOF
}
