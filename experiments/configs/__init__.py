"""The task configs (``experiments.run --config=<file>.py[:variant]``)."""

from pathlib import Path

CONFIGS = Path(__file__).parent


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
