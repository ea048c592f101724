#!/usr/bin/env bash
# The end of the run's log on every worker (each line prefixed with its worker), or on one.
#   launch/logs.sh                   # last TAIL_LINES (50) lines of every worker's log
#   WORKER=0 FOLLOW=1 launch/logs.sh # follow worker 0's log (Ctrl-C stops following, not the run)
#   RUN_NAME=gc1 launch/logs.sh      # a given run; default: the last one launched
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
: "${FOLLOW:=0}"
: "${TAIL_LINES:=50}"
[[ $TAIL_LINES =~ ^[0-9]+$ ]] || die "TAIL_LINES takes a number"
# shellcheck disable=SC2034  # sent to the workers by remote_vars
if [[ $FOLLOW == 1 ]]; then TAIL_ARGS="-n $TAIL_LINES -F"; else TAIL_ARGS="-n $TAIL_LINES"; fi

remote_ssh "$WORKER" "$(remote_prelude; remote_vars TAIL_ARGS; cat <<'EOF'
if [ ! -f "$log" ]; then echo "worker $w: no log ~/$LOG_DIR/$run.log"; exit 0; fi
tail $TAIL_ARGS "$log" | sed -u "s/^/[worker $w] /"
EOF
)"
