#!/usr/bin/env bash
# Creates the TPU VM (every worker of the slice) and waits until it is READY.
#   launch/create.sh                                   # TPU_NAME, ZONE, ACCELERATOR: common.sh
#   ACCELERATOR=v5litepod-16 ZONE=us-west4-a launch/create.sh   # RUNTIME follows the type
#   SPOT=1 launch/create.sh        # Spot VM: a preempted run resumes from its last checkpoint
#   QUEUED=1 SPOT=1 launch/create.sh   # through a queued resource (QR_NAME, default TPU_NAME):
#                                      # waits in the queue until ACTIVE, then for the node
#   QUEUED=1 WAIT_ONLY=1 launch/create.sh   # only wait (e.g. after a timeout)
# RESERVED=1 uses reserved capacity. Waiting polls every POLL_S seconds and gives up after
# TIMEOUT_S with an error; a FAILED / SUSPENDED / PREEMPTED ... state ends it at once.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
: "${WAIT_ONLY:=0}"
if [[ -z $RUNTIME && $WAIT_ONLY != 1 ]]; then
  RUNTIME=$(runtime_for "$ACCELERATOR") ||
    die "no default TPU software version for ACCELERATOR=$ACCELERATOR: set RUNTIME" \
        "(gcloud compute tpus tpu-vm versions list --zone=$ZONE)"
fi

# States that waiting cannot turn into READY / ACTIVE (node and queued resource states:
# https://cloud.google.com/tpu/docs/reference/rest/v2/projects.locations.nodes#State,
# https://cloud.google.com/tpu/docs/reference/rest/v2/projects.locations.queuedResources#State).
FATAL_STATES=" FAILED SUSPENDING SUSPENDED PREEMPTED TERMINATED STOPPING STOPPED DELETING "
teardown="launch/teardown.sh"
if [[ $QUEUED == 1 ]]; then teardown="QUEUED=1 launch/teardown.sh"; fi

# wait_for WHAT WANT CMD...: runs CMD (prints a state) until it prints WANT.
wait_for() {
  local what=$1 want=$2 state
  shift 2
  local deadline=$((SECONDS + TIMEOUT_S))
  while true; do
    state=$("$@") || die "could not read the state of $what (the gcloud error is above)"
    if [[ $state == "$want" ]]; then
      say "$what is $state"
      return 0
    fi
    if [[ $FATAL_STATES == *" $state "* ]]; then
      die "$what is $state, it will not become $want. Details:" \
          "gcloud compute tpus ${what%% *} describe ${what#* } --zone=$ZONE --project=$PROJECT;" \
          "delete it with $teardown"
    fi
    if ((SECONDS >= deadline)); then
      die "timed out after ${TIMEOUT_S}s waiting for $what to be $want (last state: ${state:-none})." \
          "It was not deleted: WAIT_ONLY=1 launch/create.sh waits again (TIMEOUT_S=... for longer);" \
          "$teardown deletes it"
    fi
    say "$what: ${state:-no state yet}, waiting for $want ($((deadline - SECONDS))s left)"
    sleep "$POLL_S"
  done
}

tier=()
if [[ $SPOT == 1 ]]; then tier+=(--spot); fi
if [[ $RESERVED == 1 ]]; then tier+=(--reserved); fi

if [[ $QUEUED == 1 ]]; then
  if [[ $WAIT_ONLY != 1 ]]; then
    say "queued resource $QR_NAME: node $TPU_NAME, $ACCELERATOR, $RUNTIME, zone $ZONE, project $PROJECT"
    gcloud_qr create "$QR_NAME" --node-id="$TPU_NAME" --accelerator-type="$ACCELERATOR" \
      --runtime-version="$RUNTIME" ${tier[@]+"${tier[@]}"}
  fi
  wait_for "queued-resources $QR_NAME" ACTIVE qr_state
else
  if [[ $WAIT_ONLY != 1 ]]; then
    say "TPU VM $TPU_NAME: $ACCELERATOR, $RUNTIME, zone $ZONE, project $PROJECT"
    gcloud_tpu create "$TPU_NAME" --accelerator-type="$ACCELERATOR" --version="$RUNTIME" \
      ${tier[@]+"${tier[@]}"}
  fi
fi
wait_for "tpu-vm $TPU_NAME" READY tpu_state
say "next: launch/setup.sh"
