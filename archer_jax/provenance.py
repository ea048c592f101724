"""What a run was made with, written into its workdir when it starts.

``record_run(workdir, config, argv)`` appends one JSON line to
``<workdir>/run_info.jsonl`` per invocation (a run resumed three times has three
lines): the time, the command line, the working directory, the resolved config (after
overrides), the git commit of the package's source and whether that tree had
uncommitted changes, the Python version, the installed versions of the packages that
decide the numbers, and the devices. ``experiments.report`` reads it back to group
runs, refuse mixed commits and print the exact commands behind every number.

Nothing here may stop a run: no git, no repository or an uninstalled package each
give ``null`` for that field.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import json
import os
import platform
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from etils import epath

RUN_INFO_FILE = "run_info.jsonl"
# Distributions whose versions change results (names as pip spells them).
PACKAGES = ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "numpy", "transformers", "tokenizers",
            "tensorflow-datasets", "ml_collections")
SOURCE_DIR = Path(__file__).resolve().parent  # the archer_jax package whose commit is recorded
_GIT_TIMEOUT_S = 10
_MAX_CHANGED = 50  # changed paths listed in an entry (the count is always exact)


def _git(source_dir: Path, *args: str) -> str | None:
    """stdout of ``git -C source_dir args``, or None when git or the repository is missing."""
    try:
        done = subprocess.run(["git", "-C", str(source_dir), *args], capture_output=True, text=True,
                              timeout=_GIT_TIMEOUT_S, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


def git_state(source_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """{"commit", "dirty", "changed"} of the git checkout holding ``source_dir`` (default:
    this package). ``changed`` lists tracked files with uncommitted changes (untracked
    files are not counted). All three are None when the source is not a tracked part of
    a git checkout (no git, an installed wheel, a copy)."""
    source_dir = Path(source_dir) if source_dir is not None else SOURCE_DIR
    unknown = {"commit": None, "dirty": None, "changed": None}
    # A package installed into a virtualenv that sits inside some checkout is not that
    # checkout's source: require the folder itself to be tracked.
    if not _git(source_dir, "ls-files", "--", "."):
        return unknown
    commit = _git(source_dir, "rev-parse", "HEAD")
    status = _git(source_dir, "status", "--porcelain", "--untracked-files=no")
    if commit is None or status is None:
        return unknown
    changed = [line[3:] for line in status.splitlines() if line.strip()]
    return {"commit": commit.strip(), "dirty": bool(changed), "changed": changed[:_MAX_CHANGED]}


def package_versions(names: Sequence[str] = PACKAGES) -> dict[str, str | None]:
    """Installed version of each distribution (None when it is not installed)."""
    versions: dict[str, str | None] = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def _config_json(config: Any) -> Any:
    """The config as plain JSON (tuples become lists; anything else JSON cannot hold, its str)."""
    if hasattr(config, "to_json_best_effort"):
        return json.loads(config.to_json_best_effort())
    return json.loads(json.dumps(config, default=str))


def _devices() -> dict[str, Any] | None:
    """Platform, count and kind of the devices, when jax is already imported (never
    imported here: the record must not start a backend the caller did not)."""
    jax = sys.modules.get("jax")
    if jax is None:
        return None
    try:
        devices = jax.devices()
        return {"platform": devices[0].platform, "count": len(devices), "kind": devices[0].device_kind,
                "process_count": jax.process_count()}
    except Exception:  # noqa: BLE001 - a record never stops a run
        return None


# CPU features that decide the code XLA's CPU backend emits (and so the last bits of
# float results, which sampling can turn into a different run on another machine).
_SIMD_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_bf16",
               "avx512_vnni", "avx512_fp16", "amx_bf16", "amx_int8", "amx_tile")


def cpu() -> dict[str, Any]:
    """The host CPU's model name and which of ``_SIMD_FLAGS`` it has (Linux:
    /proc/cpuinfo; elsewhere the processor string alone)."""
    model, flags = "", set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name":
                    model = value.strip()
                elif key.strip() == "flags":
                    flags = set(value.split())
                    break
    except OSError:
        pass
    return {"model": model or platform.processor(), "simd": [flag for flag in _SIMD_FLAGS if flag in flags]}


def run_info(config: Any, argv: Sequence[str] | None = None) -> dict[str, Any]:
    """One invocation's entry (see the module docstring)."""
    return {
        "time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "argv": list(sys.argv if argv is None else argv),
        "cwd": os.getcwd(),
        "git": git_state(),
        "python": platform.python_version(),
        "packages": package_versions(),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "cpu": cpu(), "devices": _devices()},
        "config": _config_json(config),
    }


def record_run(workdir: str | os.PathLike, config: Any, argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Appends this invocation's entry to ``<workdir>/run_info.jsonl`` (the workdir may be
    a ``gs://`` path; it is created if missing) and returns it. Call it on process 0 only."""
    entry = run_info(config, argv)
    folder = epath.Path(workdir)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / RUN_INFO_FILE
    # Read and rewrite rather than append: object stores (gs://) have no append mode.
    previous = path.read_text() if path.exists() else ""
    if previous and not previous.endswith("\n"):
        previous += "\n"  # a line cut short by a crash stays a line of its own
    path.write_text(previous + json.dumps(entry) + "\n")
    return entry


def read_run_info(workdir: str | os.PathLike) -> list[dict[str, Any]]:
    """The entries of ``<workdir>/run_info.jsonl``, oldest first ([] when it has none).
    A line that is not JSON raises ValueError naming the file and line."""
    path = epath.Path(workdir) / RUN_INFO_FILE
    if not path.exists():
        return []
    entries = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}:{number}: not a JSON line ({e})") from e
        if not isinstance(entry, Mapping):
            raise ValueError(f"{path}:{number}: expected a JSON object, got {type(entry).__name__}")
        entries.append(dict(entry))
    return entries
