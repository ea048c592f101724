#!/usr/bin/env bash
# Starts the trainer on every worker at once (multi-host: --distributed), detached
# (nohup setsid): a dropped ssh connection or a closed laptop does not stop it.
#   WORKDIR=gs://my-bucket/gc1 launch/run.sh --config=guess_city.py --config.archer.iterations=300
#   RUN_NAME=gc1-seed1 WORKDIR=gs://my-bucket/gc1 launch/run.sh --config=guess_city.py
#   FOLLOW=1 WORKDIR=... launch/run.sh ...   # then follows worker 0's log (Ctrl-C: stop following)
# The same command again resumes from the workdir's last checkpoint (its log is appended to).
# On each worker, in ~/$LOG_DIR (archer_logs): <RUN_NAME>.log (the trainer's output),
# <RUN_NAME>.exit (its exit code, once it ended), .pid (the trainer's process id), .sh (the
# job script); `latest` holds the last RUN_NAME, which status.sh, logs.sh and stop.sh use.
# RUN_NAME defaults to the workdir's last path component (gs://my-bucket/gc1 -> gc1), or a
# timestamp. A worker where a run is still alive refuses to start another.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
# On a multi-host TPU every worker needs the same workdir: a gs:// bucket folder (the trainer
# writes it through gcsfs and Orbax, installed by setup.sh) or a shared mount.
: "${WORKDIR:?set WORKDIR: a folder every worker shares, gs://bucket/run (a local path only works on a one-host TPU)}"
: "${FOLLOW:=0}"
if [[ -z $RUN_NAME ]]; then RUN_NAME=run-$(date -u +%Y%m%d-%H%M%S); fi
if [[ $WORKDIR != gs://* && $WORKDIR != /mnt/* ]]; then
  say "warning: WORKDIR=$WORKDIR: on a multi-host TPU every worker needs the same workdir (gs://bucket/run or a shared mount)"
fi
ARGS=""
if (($#)); then printf -v ARGS '%q ' "$@"; fi   # the trainer's flags, quoted for the job script

# The job each worker runs detached. The trainer's output goes straight to the log (no
# pipe: nothing between the trainer and `wait` can hide its exit status; pipefail is on
# for any pipe added here) and its exit code to <RUN_NAME>.exit when it ends.
# shellcheck disable=SC2034  # sent to the workers by remote_vars
JOB="#!/usr/bin/env bash
# $RUN_NAME: written by launch/run.sh, run detached on this worker.
$(remote_vars RUN_NAME LOG_DIR REPO_DIR VENV WORKDIR)
ARGS=($ARGS)
$(cat <<'EOF'
set -o pipefail
export PYTHONUNBUFFERED=1   # print()s reach the log as they happen
d=$HOME/$LOG_DIR
log=$d/$RUN_NAME.log exitf=$d/$RUN_NAME.exit
echo "=== $(date -u +%FT%TZ) $(hostname): $RUN_NAME starts:" \
  "python -m experiments.run --distributed --workdir=$WORKDIR ${ARGS[*]}" >> "$log"
if { cd "$HOME/$REPO_DIR" && . "$HOME/$VENV/bin/activate"; } >> "$log" 2>&1; then
  python -m experiments.run --distributed --workdir="$WORKDIR" "${ARGS[@]}" >> "$log" 2>&1 < /dev/null &
  echo $! > "$d/$RUN_NAME.pid"
  wait $!
  rc=$?
else
  echo "no ~/$REPO_DIR or ~/$VENV on $(hostname): run launch/setup.sh" >> "$log"
  rc=127
fi
echo "=== $(date -u +%FT%TZ) $(hostname): $RUN_NAME exited with $rc" >> "$log"
echo "$rc" > "$exitf.tmp" && mv -f "$exitf.tmp" "$exitf"
EOF
)"

# On each worker: refuse when a run there is still alive (one trainer per TPU host), write
# the job script, start it in its own session (setsid) immune to hangups (nohup), return.
launch="$(remote_vars RUN_NAME LOG_DIR JOB)
set -uo pipefail
$(remote_worker_id)
$(cat <<'EOF'
d=$HOME/$LOG_DIR
mkdir -p "$d" || exit 1
busy=0
for p in "$d"/*.pid; do
  [ -f "$p" ] && [ ! -f "${p%.pid}.exit" ] || continue
  if kill -0 "$(cat "$p")" 2>/dev/null; then
    r=${p##*/}
    echo "worker $w: run ${r%.pid} is still running (pid $(cat "$p")): launch/stop.sh first" >&2
    busy=1
  fi
done
[ "$busy" = 0 ] || exit 1
rm -f "$d/$RUN_NAME.exit" "$d/$RUN_NAME.pid" "$d/$RUN_NAME.stopped"
printf '%s\n' "$JOB" > "$d/$RUN_NAME.sh"
echo "$RUN_NAME" > "$d/latest"
nohup setsid bash "$d/$RUN_NAME.sh" > /dev/null 2>&1 < /dev/null &
echo "worker $w: started $RUN_NAME, log ~/$LOG_DIR/$RUN_NAME.log"
EOF
)"

say "run $RUN_NAME on $TPU_NAME (every worker), workdir $WORKDIR"
remote_ssh all "$launch"
say "started. launch/status.sh: alive / exit codes; launch/logs.sh (FOLLOW=1): logs;" \
    "launch/stop.sh: SIGTERM, final checkpoint"
if [[ $FOLLOW == 1 ]]; then
  RUN_NAME=$RUN_NAME WORKER=0 FOLLOW=1 exec bash "$(dirname "${BASH_SOURCE[0]}")/logs.sh"
fi
