"""Entry point: flags -> config -> trainer.

    python -m experiments.run --config=experiments/configs/guess_city.py:demo --workdir=/tmp/gc
    python -m experiments.run --config=guess_city.py --config.archer.iterations=500 --workdir=/mnt/bucket/gc

A bare config file name resolves against experiments/configs/. Rerunning the same
command resumes from the workdir's last checkpoint. ``--distributed`` starts
``jax.distributed`` (every host of a TPU pod runs this same command).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from absl import app, flags, logging
from ml_collections import config_flags

from experiments.configs import CONFIGS, resolve_config_path  # noqa: F401 (tools call run.resolve_config_path)


# The command line as typed, before resolve_config_path rewrites bare config names
# (filled in by __main__; empty when main is called some other way).
_COMMAND_LINE: list[str] = []
_CONFIG = config_flags.DEFINE_config_file("config", None, "task config file[:variant]", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "output folder: checkpoints, metrics, transcripts")
_DISTRIBUTED = flags.DEFINE_bool("distributed", False, "call jax.distributed.initialize() (multi-host pods)")
_COORDINATOR = flags.DEFINE_string(
    "coordinator_address", None, "with --distributed where the cluster is not detected (CPU or GPU hosts): "
    "process 0's host:port")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "with --coordinator_address: how many processes")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "with --coordinator_address: this process's index")
flags.mark_flags_as_required(["config", "workdir"])


def unknown_overrides(argv: list[str]) -> list[str]:
    """Messages for ``--config.a.b=...`` overrides that name no config field (ml_collections
    would otherwise fail with a bare AttributeError), or a field of another algorithm than
    the run's (``algorithms.foreign_field``: it would be ignored silently)."""
    spec = next((a[len("--config="):] for a in argv if a.startswith("--config=")), None)
    if spec is None:
        return []
    path, _, variant = spec.partition(":")
    if not Path(path).is_file():
        return [f"--config={spec}: no such config file (bare names resolve against {CONFIGS})"]
    module_spec = importlib.util.spec_from_file_location("_config_check", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    try:
        config = module.get_config(variant or None)
    except ValueError as e:
        return [f"--config={spec}: {e}"]
    from archer_jax import algorithms

    overrides = [a for a in argv if a.startswith("--config.")]
    algorithm = next((a.split("=", 1)[1] for a in overrides if a.split("=", 1)[0] == "--config.algorithm"),
                     config.get("algorithm"))
    problems = []
    for a in overrides:
        field = a[len("--config."):].split("=", 1)[0]
        if why := algorithms.foreign_field(algorithm, field):
            problems.append(f"{a}: {why}")
            continue
        node = config
        for i, part in enumerate(field.split(".")):
            if not hasattr(node, "keys") or part not in node:
                parent = ".".join(field.split(".")[:i]) or "config"
                known = sorted(node.keys()) if hasattr(node, "keys") else []
                problems.append(f"{a}: unknown config field 'config.{field}'; "
                                f"{'fields of config.' + parent if i else 'top-level fields'}: {known}")
                break
            node = node[part]
    return problems


def drop_unusable_privileged(config, argv: list[str]) -> str | None:
    """A config file may give the critic privileged tokens (the Subset demo does:
    ``config.critic.privileged_len``); a run of an algorithm that cannot use them (CHAI,
    whose critic acts, or one without an utterance critic) from that file gets 0, and the
    note this returns. Set by a flag, the field is checked as any other, and refused."""
    from archer_jax import algorithms, config_checks

    if not config.critic.privileged_len or any(a.split("=", 1)[0] == "--config.critic.privileged_len" for a in argv):
        return None
    if config.algorithm not in algorithms.NAMES:
        return None  # check_config names the valid algorithms
    why = config_checks.privileged_unusable(config.algorithm)
    if why is None:
        return None
    config.critic.privileged_len = 0
    return f"note: config.critic.privileged_len set to 0 (the config file's value is for ArCHer's critic): {why}"


def main(argv: list[str]) -> None:
    del argv
    if not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)  # Orbax logs every file it writes at INFO
    import jax

    if _DISTRIBUTED.value:
        # CPU processes reach each other through gloo (the default has no cross-process
        # collectives); TPU and GPU backends ignore the setting.
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
    from archer_jax import provenance, trainer

    try:  # before anything is written into it
        trainer.check_workdir(_WORKDIR.value)
    except trainer.USER_ERRORS as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    if note := drop_unusable_privileged(_CONFIG.value, _COMMAND_LINE or sys.argv):
        print(note, file=sys.stderr)
    if jax.process_index() == 0:
        provenance.record_run(_WORKDIR.value, _CONFIG.value, _COMMAND_LINE or sys.argv)
    try:
        trainer.train(_CONFIG.value, _WORKDIR.value)
    except trainer.USER_ERRORS as e:
        # A bad field, file or checkpoint: one message, no traceback; nothing is lost.
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    _COMMAND_LINE.extend(sys.argv)
    sys.argv = resolve_config_path(sys.argv)
    if problems := unknown_overrides(sys.argv):
        print("error: " + "\nerror: ".join(problems), file=sys.stderr)
        sys.exit(2)
    app.run(main)
