#!/usr/bin/env bash
# Ships this checkout to every worker (~/$REPO_DIR) and installs requirements-tpu.txt
# (TPU jax and this package) into ~/$VENV there. Run it again after changing the code.
#   launch/setup.sh
#   ARCHIVE=/tmp/src.tgz launch/setup.sh    # keep the archive it ships (default: a temp file)
# What ships: in a git checkout the files git knows or would add (tracked, and untracked
# ones that .gitignore does not ignore), otherwise the whole folder; in both cases never
# .git, virtual environments, caches, *.egg-info, build outputs or workdirs.
# The previous copy on each worker is kept as ~/$REPO_DIR.old.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
: "${ARCHIVE:=}"                                  # the local archive; empty: a temp file
: "${REMOTE_ARCHIVE:=/tmp/${REPO_DIR//\//_}_src.tgz}"   # where it lands on each worker

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [[ -z $ARCHIVE ]]; then
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  ARCHIVE=$tmp/${REPO_DIR##*/}_src.tgz
fi

# Left out in both modes (GNU tar patterns: a bare name matches that name at any depth,
# './x' only at the top).
excludes=(
  --exclude=.git --exclude=.venv --exclude=venv --exclude=.ci-venv
  --exclude=__pycache__ --exclude='*.pyc' --exclude='*.egg-info'
  --exclude=.pytest_cache --exclude=.mypy_cache --exclude=.ruff_cache --exclude=.ipynb_checkpoints
  --exclude='./workdir*' --exclude=./build --exclude=./dist
)
if [[ $(git -C "$root" rev-parse --is-inside-work-tree 2>/dev/null) == true ]]; then
  # Tracked files still present (a deleted one would fail tar) plus untracked, not ignored ones.
  git -C "$root" ls-files -z --cached --others --exclude-standard |
    while IFS= read -r -d '' f; do
      if [[ -e $root/$f || -L $root/$f ]]; then printf './%s\0' "$f"; fi
    done |
    tar czf "$ARCHIVE" -C "$root" "${excludes[@]}" --null -T -
else
  tar czf "$ARCHIVE" -C "$root" "${excludes[@]}" .
fi
say "archive $ARCHIVE: $(tar tzf "$ARCHIVE" | grep -vc '/$') files, $(du -h "$ARCHIVE" | cut -f1)"

gcloud_tpu scp "$ARCHIVE" "$TPU_NAME:$REMOTE_ARCHIVE" --worker=all

remote_ssh all "$(remote_vars REPO_DIR VENV REMOTE_ARCHIVE; cat <<'EOF'
set -euo pipefail
repo=$HOME/$REPO_DIR
# Unpack next to the old copy, then swap: files deleted here do not linger there.
rm -rf "$repo.new" && mkdir -p "$repo.new"
tar xzf "$REMOTE_ARCHIVE" -C "$repo.new"
rm -f "$REMOTE_ARCHIVE"
if [ -d "$repo" ]; then rm -rf "$repo.old" && mv "$repo" "$repo.old"; fi
mv "$repo.new" "$repo"
if [ ! -x "$HOME/$VENV/bin/python" ]; then
  python3 -m venv "$HOME/$VENV" ||
    { echo "$(hostname): python3 -m venv failed; install it: sudo apt-get install -y python3-venv" >&2; exit 1; }
fi
set +u; . "$HOME/$VENV/bin/activate"; set -u
cd "$repo"
pip install -q --upgrade pip
pip install -q -r requirements-tpu.txt
version=$(python -c 'import archer_jax, jax; print(jax.__version__)')
echo "$(hostname): archer_jax installed, jax $version"
EOF
)"
say "next: WORKDIR=gs://<bucket>/<run> launch/run.sh --config=<task>.py"
