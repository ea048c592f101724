"""Where a run's numbers go: metrics.jsonl, TensorBoard, a console progress bar, and
readable dialogue transcripts.

One ``log`` call per logged iteration takes the whole metrics tree (device arrays
welcome) and brings it to the host with ONE ``jax.device_get``. Names are
namespaced ('critic/q1_loss', 'actor/pg_loss', 'rollout/return_mean'); nested dicts
are joined with '/'.

Files under the workdir:
  metrics.jsonl                one JSON object per logged iteration:
                               {"stage", "iteration", "time", <metric>: value, ...}
                               (non-finite floats are written as NaN / Infinity, which
                               Python's json and pandas read back)
  tensorboard/<stage>/         tensorboardX event files, step = iteration
  transcripts/<stage>_<iteration:06d>.txt   sample dialogues
  evaluations/<stage>_<iteration:05d>.json  every greedy evaluation episode:
                               {"stage", "iteration", "seeds", "returns", "successes",
                               "hidden"}, so two evaluations on the same seeds can be
                               compared episode by episode (a paired standard error)

Resuming: the first ``start_stage`` (or ``log``) of a stage drops that stage's lines
with iteration >= the resumed iteration, so a rerun from a checkpoint does not
duplicate them; TensorBoard hides them too (``purge_step``). Earlier lines stay.
On multi-host runs pass ``enabled=jax.process_index() == 0``.

The workdir may be a ``gs://`` bucket folder (``etils.epath``): objects there cannot
be appended to, so metrics.jsonl is rewritten whole at each row (its rows are kept
in memory), and TensorBoard writes to a local folder whose event files are copied
to the bucket every ``_TENSORBOARD_SYNC_S`` seconds and at ``flush`` / ``close``.

Weights & Biases (optional, ``wandb_project``): the same scalars go to one W&B run per
workdir, named ``<stage>/<metric>`` against ``<stage>/iteration``. Its id is kept in
``wandb_id`` so a resumed run continues the same W&B run (W&B's history is append-only:
iterations a resume repeats appear twice there, once in metrics.jsonl). ``WANDB_MODE``
(online / offline / disabled) and W&B's other environment variables apply as usual; its
local files go to ``<workdir>/wandb`` (a bucket workdir: W&B's default folder).
"""

from __future__ import annotations

import importlib
import json
import os
import pathlib
import re
import secrets
import shutil
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import numpy as np
from etils import epath

METRICS_FILE = "metrics.jsonl"
TENSORBOARD_DIR = "tensorboard"
TRANSCRIPTS_DIR = "transcripts"
WANDB_ID_FILE = "wandb_id"
EVALUATIONS_DIR = "evaluations"
_POSTFIX_ITEMS = 4
_TENSORBOARD_SYNC_S = 30.0


def is_remote(path: str | os.PathLike) -> bool:
    """Whether a workdir is a URL (a ``gs://`` bucket folder) rather than a local folder."""
    return "://" in os.fspath(path)


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name) or "_"


def _flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(_flatten(value, f"{name}/"))
        else:
            out[name] = value
    return out


def _to_python(value: Any) -> Any:
    """Host value -> JSON-able Python (scalars as int/float/bool, arrays as lists)."""
    if isinstance(value, (np.ndarray, np.generic)):
        return value.item() if value.ndim == 0 else value.tolist()
    if isinstance(value, (list, tuple)):
        return [_to_python(v) for v in value]
    return value


def _format(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _summary_writer() -> type:
    """tensorboardX's ``SummaryWriter``, imported without PyTorch. tensorboardX imports torch
    whenever it is installed, only to accept torch tensors (this logger passes floats): that
    cost every run about 4 s of start-up and 185 MB of memory on the 2-core machine. A
    ``None`` entry in ``sys.modules`` makes that one import fail as if torch were absent;
    a later ``import torch`` (the user's) works as usual. Where torch is already imported,
    tensorboardX gets it."""
    if "tensorboardX" not in sys.modules and "torch" not in sys.modules:
        sys.modules["torch"] = None
        try:
            importlib.import_module("tensorboardX")
        finally:
            del sys.modules["torch"]
    from tensorboardX import SummaryWriter

    return SummaryWriter


class MetricsLogger:
    """metrics.jsonl + TensorBoard + tqdm bar + transcripts for one run.

    total_iterations: the progress bar's length (per stage unless ``start_stage``
    says otherwise); enabled: False makes every method a no-op (non-primary hosts);
    postfix_keys: metrics shown after the bar (default: up to four, returns and
    losses first); console: show the bar; wandb_project (and wandb_entity, '' = the
    account's default): also log to Weights & Biases, with ``wandb_config`` as the W&B
    run's config.
    """

    def __init__(self, workdir: str | os.PathLike, *, total_iterations: int, enabled: bool = True,
                 postfix_keys: Sequence[str] | None = None, console: bool = True, wandb_project: str = "",
                 wandb_entity: str = "", wandb_config: Mapping[str, Any] | None = None) -> None:
        self.workdir = epath.Path(workdir)
        self.total_iterations = int(total_iterations)
        self.enabled = enabled
        self.postfix_keys = None if postfix_keys is None else tuple(postfix_keys)
        self.console = console
        self.stage: str | None = None
        self._started: set[str] = set()
        self._writers: dict[str, Any] = {}
        self._bar: Any = None
        self._file: Any = None
        # A bucket's objects cannot be appended to: its metrics.jsonl is rewritten from these.
        self._lines: list[str] | None = [] if is_remote(workdir) else None
        # ... and its TensorBoard events are written here first (_sync_tensorboard).
        self._tensorboard_local = tempfile.mkdtemp(prefix="tensorboard") if self._lines is not None else None
        self._synced = time.monotonic()
        self._wandb_settings = (wandb_project, wandb_entity, dict(wandb_config or {}))
        self._wandb: Any = None  # the W&B run, started with the first stage
        if enabled:
            self.workdir.mkdir(parents=True, exist_ok=True)

    @property
    def metrics_path(self) -> epath.Path:
        return self.workdir / METRICS_FILE

    # -- stages ---------------------------------------------------------------------

    def start_stage(self, stage: str, *, start_iteration: int = 0, total_iterations: int | None = None) -> None:
        """Begins (or resumes at ``start_iteration``) a stage: drops the stage's stale
        lines (iteration >= start_iteration) and opens its bar and TensorBoard writer."""
        if not self.enabled:
            return
        start_iteration = int(start_iteration)
        self._truncate(stage, start_iteration)
        self._started.add(stage)
        self.stage = stage
        if stage in self._writers:
            self._writers.pop(stage).close()
        root = self._tensorboard_local or str(self.workdir / TENSORBOARD_DIR)
        self._writers[stage] = _summary_writer()(
            os.path.join(root, _safe_name(stage)),
            purge_step=start_iteration if start_iteration > 0 else None, flush_secs=30)
        if self._wandb_settings[0]:
            self._start_wandb(stage)
        if self._bar is not None:
            self._bar.close()
        from tqdm.auto import tqdm

        total = self.total_iterations if total_iterations is None else int(total_iterations)
        self._bar = tqdm(total=total, initial=min(start_iteration, total), desc=stage, dynamic_ncols=True,
                         disable=not self.console, leave=True)

    def _start_wandb(self, stage: str) -> None:
        """Starts (or, with the workdir's ``wandb_id``, resumes) the W&B run, and plots the
        stage's metrics against its own iteration."""
        if self._wandb is None:
            import wandb

            project, entity, config = self._wandb_settings
            id_file = self.workdir / WANDB_ID_FILE
            run_id = id_file.read_text().strip() if id_file.exists() else secrets.token_hex(4)
            folder = None if is_remote(self.workdir) else str(self.workdir)  # W&B writes <folder>/wandb/
            self._wandb = wandb.init(project=project, entity=entity or None, id=run_id, resume="allow",
                                     name=self.workdir.name, config=config, dir=folder)
            if not id_file.exists():
                id_file.write_text(run_id + "\n")
        self._wandb.define_metric(f"{stage}/iteration")
        self._wandb.define_metric(f"{stage}/*", step_metric=f"{stage}/iteration")

    def _truncate(self, stage: str, start_iteration: int) -> None:
        """Rewrites metrics.jsonl without the stage's lines at or after start_iteration
        (and without a line cut short by a killed run)."""
        if self._file is not None:
            self._file.close()
            self._file = None
        path = self.metrics_path
        kept: list[str] = []
        if path.exists():
            with path.open("r", encoding="utf-8") as f:
                for line in f:
                    try:
                        record = json.loads(line)
                    except json.JSONDecodeError:
                        continue
                    if not isinstance(record, dict):
                        continue
                    if record.get("stage") == stage and record.get("iteration", -1) >= start_iteration:
                        continue
                    kept.append(line if line.endswith("\n") else line + "\n")
            if self._lines is not None:
                path.write_text("".join(kept))  # one object write: all or nothing
            else:
                tmp = path.with_name(path.name + ".tmp")
                with tmp.open("w", encoding="utf-8") as f:
                    f.writelines(kept)
                os.replace(tmp, path)
        if self._lines is not None:
            self._lines = kept
        else:
            self._file = path.open("a", encoding="utf-8")

    # -- logging ----------------------------------------------------------------------

    def log(self, stage: str, iteration: int, metrics: Mapping[str, Any]) -> dict[str, Any]:
        """Writes one iteration's metrics everywhere; returns them as Python values.

        ``metrics`` may hold jax arrays (fetched with a single ``jax.device_get``) and
        nested dicts. A stage seen for the first time is started at ``iteration``.
        """
        if not self.enabled:
            return {}
        if stage not in self._started or stage != self.stage:
            if stage in self._started:
                self.stage = stage
            else:
                self.start_stage(stage, start_iteration=iteration)
        values = {k: _to_python(v) for k, v in _flatten(jax.device_get(dict(metrics))).items()}
        iteration = int(iteration)
        record = {"stage": stage, "iteration": iteration, "time": time.time(), **values}
        self._write(json.dumps(record) + "\n")
        writer = self._writers[stage]
        for name, value in values.items():
            if isinstance(value, (int, float)):  # bool included
                writer.add_scalar(name, float(value), iteration)
            elif isinstance(value, list) and value:
                try:
                    array = np.asarray(value, dtype=np.float64)
                except (TypeError, ValueError):
                    continue
                writer.add_histogram(name, array, iteration)
        if self._wandb is not None:
            scalars = {f"{stage}/{k}": v for k, v in values.items() if isinstance(v, (int, float))}
            self._wandb.log({f"{stage}/iteration": iteration, **scalars})
        if self._tensorboard_local is not None and time.monotonic() - self._synced > _TENSORBOARD_SYNC_S:
            self._sync_tensorboard()
        if self._bar is not None and not self._bar.disable:
            self._bar.set_postfix({k: _format(values[k]) for k in self._postfix(values)}, refresh=False)
            self._bar.update(max(0, min(iteration + 1, self._bar.total or iteration + 1) - self._bar.n))
        return values

    def _write(self, line: str) -> None:
        if self._lines is None:
            self._file.write(line)
            self._file.flush()
        else:
            self._lines.append(line)
            self.metrics_path.write_text("".join(self._lines))

    def _postfix(self, values: Mapping[str, Any]) -> list[str]:
        scalars = [k for k, v in values.items() if isinstance(v, (int, float))]
        if self.postfix_keys is not None:
            return [k for k in self.postfix_keys if k in values]

        def rank(k: str) -> int:
            return 0 if "return" in k else 1 if "loss" in k else 2

        return sorted(scalars, key=rank)[:_POSTFIX_ITEMS]

    def info(self, message: str) -> None:
        """Prints a line without breaking the progress bar."""
        if not self.enabled:
            return
        if self._bar is not None and self.console:
            self._bar.write(message)
        elif self.console:
            print(message, flush=True)

    def write_transcripts(self, stage: str, iteration: int, dialogues: Sequence[str]) -> epath.Path | None:
        """Writes sample dialogues to transcripts/<stage>_<iteration:06d>.txt (replacing
        one from an earlier life of the run); returns the path."""
        if not self.enabled:
            return None
        folder = self.workdir / TRANSCRIPTS_DIR
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{_safe_name(stage)}_{int(iteration):06d}.txt"
        rule = "=" * 72
        parts = [f"stage {stage}, iteration {int(iteration)}, {len(dialogues)} dialogues\n"]
        for i, dialogue in enumerate(dialogues):
            parts.append(f"{rule}\ndialogue {i}\n{rule}\n{str(dialogue).rstrip()}\n")
        path.write_text("\n".join(parts), encoding="utf-8")
        return path

    def write_evaluation(self, stage: str, iteration: int, *, seeds: Sequence[int], returns: Sequence[float],
                         successes: Sequence[bool], hidden: Sequence[str]) -> epath.Path | None:
        """Writes one evaluation's episodes to evaluations/<stage>_<iteration:05d>.json
        (atomically, replacing one from an earlier life of the run); returns the path."""
        if not self.enabled:
            return None
        folder = self.workdir / EVALUATIONS_DIR
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{_safe_name(stage)}_{int(iteration):05d}.json"
        record = {"stage": stage, "iteration": int(iteration), "seeds": [int(s) for s in seeds],
                  "returns": [float(r) for r in returns], "successes": [bool(s) for s in successes],
                  "hidden": [str(h) for h in hidden]}
        if self._lines is not None:
            path.write_text(json.dumps(record))  # one object write: all or nothing
            return path
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(record), encoding="utf-8")
        os.replace(tmp, path)
        return path

    def _sync_tensorboard(self) -> None:
        """Copies the local event files of a bucket workdir's TensorBoard to the bucket."""
        for writer in self._writers.values():
            writer.flush()
        local = pathlib.Path(self._tensorboard_local)
        for file in local.rglob("*"):
            if file.is_file():
                target = self.workdir / TENSORBOARD_DIR / file.relative_to(local).as_posix()
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(file.read_bytes())
        self._synced = time.monotonic()

    def flush(self) -> None:
        if self._file is not None:
            self._file.flush()
        for writer in self._writers.values():
            writer.flush()
        if self._tensorboard_local is not None:
            self._sync_tensorboard()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        for writer in self._writers.values():
            writer.close()
        if self._tensorboard_local is not None and self._writers:
            self._sync_tensorboard()
            shutil.rmtree(self._tensorboard_local, ignore_errors=True)  # copied: a later stage writes anew
        self._writers.clear()
        if self._wandb is not None:
            self._wandb.finish()
            self._wandb = None
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> MetricsLogger:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
