"""A finished (or training) run opened by the tools that use its policy:
``experiments.export``, ``experiments.evaluate`` and ``experiments.play``.

Each tool takes ``--workdir`` of a run made by ``experiments.run`` and rebuilds the
run from its config with ``trainer.setup(config, workdir, read_only=True)``: the
latest complete checkpoint is restored and nothing in ``checkpoints/`` is created or
removed, so a tool may read a run while it trains. Without ``--config=`` the last
command recorded in ``<workdir>/run_info.jsonl`` gives the config (``--config.x=``
overrides given to the tool still apply after it). A user error (a flag, the folder, a
config that does not fit the checkpoint) is one ``error:`` line and exit code 2.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, NoReturn

from experiments import run as run_cli  # defines --config and --workdir, resolves config paths

RUN_INFO_FILE = "run_info.jsonl"  # experiments.run's record of its commands


class ToolError(ValueError):
    """Bad tool input (a flag, the workdir): one message, exit code 2."""


def fail(message: str) -> NoReturn:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def check_workdir(workdir: str) -> Path:
    """The workdir as a Path, or ToolError naming what is wrong and what to do."""
    path = Path(workdir)
    if not path.exists():
        raise ToolError(f"--workdir={workdir}: no such folder; pass the --workdir of a run made by experiments.run")
    if not path.is_dir():
        raise ToolError(f"--workdir={workdir}: is a file, not a run folder; pass the --workdir of a run made by "
                        "experiments.run")
    checkpoints = path / "checkpoints"
    if not checkpoints.is_dir() or not any(p.name.isdigit() and p.is_dir() for p in checkpoints.iterdir()):
        raise ToolError(f"{checkpoints}: no complete checkpoint; run experiments.run with --workdir={workdir} "
                        "until it writes one (config.checkpoint_every)")
    return path


def open_run() -> Any:
    """The run of --workdir rebuilt from --config with its latest checkpoint restored
    (``trainer.Run``); a user error exits with one message and code 2."""
    from archer_jax import checkpointing, trainer  # heavy: after the flags parsed

    try:
        config = run_cli._CONFIG.value
        workdir = check_workdir(run_cli._WORKDIR.value)
        if not config.actor.checkpoint and not (workdir / "tokenizer" / "tokenizer.json").is_file():
            raise ToolError(f"{workdir / 'tokenizer'}: the run's word tokenizer is missing (config.actor.checkpoint "
                            "is empty, so the run built one there); without it the actor's ids mean nothing")
        return trainer.setup(config, workdir, read_only=True)
    except (ToolError, *trainer.USER_ERRORS) as e:
        if isinstance(e, checkpointing.CheckpointMismatchError):
            fail(f"{e}\nThe tool rebuilds the run from its config: pass the --config= and --config.x= overrides of "
                 f"the experiments.run command that made {run_cli._WORKDIR.value}")
        fail(str(e))


def recorded_config_args(workdir: str) -> list[str]:
    """The ``--config=`` and ``--config.x=`` arguments of the last command recorded in
    ``<workdir>/run_info.jsonl``, a config path relative to that command's folder made
    absolute; [] when none is recorded."""
    try:
        lines = [line for line in (Path(workdir) / RUN_INFO_FILE).read_text().splitlines() if line.strip()]
        entry = json.loads(lines[-1])
        argv, cwd = list(entry["argv"]), entry.get("cwd")
    except (OSError, ValueError, IndexError, KeyError, TypeError):
        return []
    out = []
    for arg in map(str, argv):
        if arg.startswith("--config="):
            path, sep, variant = arg[len("--config="):].partition(":")
            if cwd and not Path(path).is_absolute() and (Path(cwd) / path).is_file():
                arg = f"--config={Path(cwd) / path}{sep}{variant}"
        if arg.startswith(("--config=", "--config.")):
            out.append(arg)
    return out if any(a.startswith("--config=") for a in out) else []


def prepare_argv(argv: list[str], required: dict[str, str] | None = None) -> list[str]:
    """The tool's command line made ready for ``app.run``: the run's recorded config
    put first when ``--config=`` is not given, bare config names resolved. Exits with
    ``error:`` lines (code 2) for a missing --workdir, a missing flag of ``required``
    (flag name -> what it is), no config to be found, or an unknown --config.x= field."""
    workdir = next((a[len("--workdir="):] for a in argv if a.startswith("--workdir=")), None)
    if workdir and not any(a.startswith("--config=") for a in argv):
        recorded = recorded_config_args(workdir)
        if recorded:
            print(f"config: {' '.join(recorded)} (the command recorded in {Path(workdir) / RUN_INFO_FILE})",
                  file=sys.stderr)
        argv = [argv[0], *recorded, *argv[1:]]
    problems = []
    if not workdir:
        problems.append("--workdir=DIR is required: the folder of a run made by experiments.run")
    for name, what in (required or {}).items():
        if not any(a.startswith(f"--{name}=") for a in argv):
            problems.append(f"--{name}= is required: {what}")
    if workdir and not any(a.startswith("--config=") for a in argv):
        if not Path(workdir).is_dir():
            problems.append(f"--workdir={workdir}: no such folder; pass the --workdir of a run made by experiments.run")
        else:
            problems.append(f"--config=<task>.py:variant is required: {workdir} records no command ({RUN_INFO_FILE}); "
                            "pass the --config= and --config.x= overrides of the experiments.run command that made it")
    argv = run_cli.resolve_config_path(argv)
    problems = problems or run_cli.unknown_overrides(argv)
    if problems:
        print("error: " + "\nerror: ".join(problems), file=sys.stderr)
        sys.exit(2)
    return argv
