"""The algorithms. Each module holds its jitted phases and declares the stages it runs
(``stages(run)``); the trainer runs every stage with its one loop (``trainer.run_stage``):
timing, compile counting, the evaluation cadence, the finite check, logging,
checkpointing and SIGTERM are the loop's, never an algorithm's.

An algorithm is chosen by ``config.algorithm`` (``NAMES``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, Protocol

Metrics = dict[str, Any]


class PhaseClock(Protocol):
    def lap(self, phase: str, outputs: Any = None) -> None:
        """Charges the time since the last lap to ``time/<phase>_s``, once ``outputs``
        (device arrays) are ready."""


# iterate(k, clock) runs iteration k (1-based) of a stage and returns its metrics.
Iterate = Callable[[int, PhaseClock], Metrics]


@dataclasses.dataclass(frozen=True)
class Stage:
    """One stage as the trainer's loop runs it.

    Row k (k = 1 .. ``iterations``) of the stage's metrics holds iteration k's metrics
    and, every ``config.archer.eval_every`` iterations and after the last, a greedy
    evaluation of the policy after it. Where ``evaluate_start``, row 0 evaluates the
    policy the stage starts from. ``start(done)`` is called once before the loop, with
    the iterations already done (0 on a fresh stage, more on a resume): it prepares the
    state (a fresh stage only) and compiles the stage's phases, and returns ``iterate``.
    ``act() -> (runner, params)``: the ``rollout.RolloutRunner`` and the params the
    stage's agent plays with, in its evaluations too; None = the run's runner with the
    actor's params (greedy decoding in evaluations).
    """

    name: str
    iterations: int
    evaluate_start: bool
    start: Callable[[int], Iterate]
    act: Callable[[], tuple[Any, Any]] | None = None


# Each algorithm's stage names, in the order it runs them (checkpoint steps count stages
# in this order, so a name never moves).
STAGE_NAMES: dict[str, tuple[str, ...]] = {
    "archer": ("bc", "archer"),
    "archer_baseline": ("bc", "archer"),
    "filtered_bc": ("bc", "filtered_bc"),
    "chai": ("bc", "chai"),
    "bc": ("bc",),
    "offline_filtered_bc": ("offline_filtered_bc",),
    "offline_archer": ("offline_archer",),
}
NAMES = tuple(STAGE_NAMES)


def stages(name: str, run: Any) -> list[Stage]:
    """The stages of algorithm ``name`` for ``run`` (a ``trainer.Run``), in the order of
    ``STAGE_NAMES[name]``."""
    from archer_jax.algorithms import archer, bc, chai, filtered_bc, offline_archer

    builders = {"archer": archer.stages, "archer_baseline": archer.stages, "filtered_bc": filtered_bc.stages,
                "chai": chai.stages, "bc": bc.stages,
                "offline_filtered_bc": filtered_bc.offline_stages, "offline_archer": offline_archer.stages}
    if name not in builders:
        raise ValueError(f"unknown algorithm {name!r}; choose one of {NAMES}")
    out = builders[name](run)
    assert tuple(s.name for s in out) == STAGE_NAMES[name], (name, [s.name for s in out])
    return out
