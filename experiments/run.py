"""Entry point: flags -> config -> trainer.

    python -m experiments.run --config=experiments/configs/guess_city.py:demo --workdir=/tmp/gc
    python -m experiments.run --config=guess_city.py --config.archer.iterations=500 --workdir=gs://...

A bare config file name resolves against experiments/configs/. Rerunning the same
command resumes from the workdir's last checkpoint. ``--distributed`` starts
``jax.distributed`` (every host of a TPU pod runs this same command).
"""

from __future__ import annotations

import sys
from pathlib import Path

from absl import app, flags
from ml_collections import config_flags

CONFIGS = Path(__file__).parent / "configs"

_CONFIG = config_flags.DEFINE_config_file("config", None, "task config file[:variant]", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "output folder: checkpoints, metrics, transcripts")
_DISTRIBUTED = flags.DEFINE_bool("distributed", False, "call jax.distributed.initialize() (multi-host pods)")
flags.mark_flags_as_required(["config", "workdir"])


def resolve_config_path(argv: list[str]) -> list[str]:
    """Rewrites ``--config=name.py[:arg]`` to experiments/configs/name.py when the bare
    name is not a file of its own."""
    out = []
    for a in argv:
        if a.startswith("--config="):
            path, sep, variant = a[len("--config="):].partition(":")
            if not Path(path).exists() and (CONFIGS / path).exists():
                a = f"--config={CONFIGS / path}{sep}{variant}"
        out.append(a)
    return out


def main(argv: list[str]) -> None:
    del argv
    import jax

    if _DISTRIBUTED.value:
        jax.distributed.initialize()
    from archer_jax import trainer

    trainer.train(_CONFIG.value, _WORKDIR.value)


if __name__ == "__main__":
    sys.argv = resolve_config_path(sys.argv)
    app.run(main)
