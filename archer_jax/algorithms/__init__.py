"""The algorithms. Each module holds its jitted phases and declares the stages it runs
(``stages(run)``); the trainer runs every stage with its one loop (``trainer.run_stage``):
timing, compile counting, the evaluation cadence, the finite check, logging,
checkpointing and SIGTERM are the loop's, never an algorithm's.

An algorithm is chosen by ``config.algorithm`` (``NAMES``).
"""

from __future__ import annotations

import dataclasses
import importlib
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


@dataclasses.dataclass(frozen=True)
class Algorithm:
    """What the trainer needs to know of an algorithm before its stages exist.

    ``stages``: "module:function" in this package, the function building the stages from
    a ``trainer.Run``. ``stage_names``: their names, in the order it runs them
    (checkpoint steps count stages in this order, so a name never moves).
    ``config_blocks``: the config blocks only some algorithms read, and this one does
    (a run of another algorithm refuses their fields). ``token_value``: the run builds a
    ``value_heads.TokenValue`` on the actor's architecture (``run.baseline``,
    ``state.baseline_params``). ``reference(config)``: the state keeps a frozen copy of
    the actor (``state.ref_actor_params``, the policy a KL term anchors to). ``critic``:
    the run builds the utterance-level critic of ``config.critic`` (``run.critic``,
    ``run.bridge``, the state's critic and target critic); without it those are None
    and nothing of the critic is loaded or allocated. ``check``: "module:function" in this
    package validating the algorithm's own config blocks (``check_config(config)``, raising
    ``config_checks.ConfigError`` naming the field), or None. ``privileged_unusable``: why
    the critic must not read what the environment hides (``config.critic.privileged_len``)
    though the algorithm has one, or None.
    """

    stages: str
    stage_names: tuple[str, ...]
    config_blocks: tuple[str, ...] = ()
    token_value: bool = False
    reference: Callable[[Any], bool] = lambda config: False
    critic: bool = True
    check: str | None = None
    privileged_unusable: str | None = None


def _archer_kl(config: Any) -> bool:
    return config.archer.kl_coef > 0 or config.archer.forward_kl_coef > 0


ALGORITHMS: dict[str, Algorithm] = {
    "archer": Algorithm("archer:stages", ("bc", "archer"), reference=_archer_kl),
    "archer_baseline": Algorithm("archer:stages", ("bc", "archer"), token_value=True, reference=_archer_kl),
    "ppo": Algorithm("ppo:stages", ("bc", "ppo"), ("ppo",), token_value=True,
                     reference=lambda config: config.ppo.kl_coef > 0, critic=False, check="ppo:check_config"),
    "filtered_bc": Algorithm("filtered_bc:stages", ("bc", "filtered_bc"), ("filtered_bc",), critic=False,
                             check="filtered_bc:check_config"),
    "chai": Algorithm("chai:stages", ("bc", "chai"), ("chai",), check="chai:check_config",
                      privileged_unusable="CHAI's critic picks what the agent says, which must not depend on what "
                                          "the environment hides"),
    "bc": Algorithm("bc:stages", ("bc",), critic=False),
    "offline_filtered_bc": Algorithm("filtered_bc:offline_stages", ("offline_filtered_bc",), ("filtered_bc",),
                                     critic=False, check="filtered_bc:check_config"),
    "offline_archer": Algorithm("offline_archer:stages", ("offline_archer",), ("offline",),
                                check="offline_archer:check_config"),
}
NAMES = tuple(ALGORITHMS)


def foreign_field(name: str, field: str) -> str | None:
    """Why algorithm ``name`` refuses the config field ``field`` ("ppo.epochs"): it sits in
    a block other algorithms read and ``name`` does not; None when it may be set."""
    block = field.split(".")[0]
    readers = [n for n, a in ALGORITHMS.items() if block in a.config_blocks]
    if not readers or name not in ALGORITHMS or block in ALGORITHMS[name].config_blocks:
        return None
    fix = f"--config.algorithm={readers[0]}" if len(readers) == 1 else f"config.algorithm to one of {readers}"
    return (f"config.{block} is read by {' and '.join(repr(r) for r in readers)} only, and config.algorithm is "
            f"{name!r}; drop the field, or set {fix}")


def get(name: str) -> Algorithm:
    """The algorithm called ``name``; ValueError naming the valid ones otherwise."""
    if name not in ALGORITHMS:
        raise ValueError(f"unknown algorithm {name!r}; choose one of {NAMES}")
    return ALGORITHMS[name]


def _function(spec: str) -> Callable[..., Any]:
    module, function = spec.split(":")
    return getattr(importlib.import_module(f"{__name__}.{module}"), function)


def check_config(name: str, config: Any) -> None:
    """Algorithm ``name``'s own checks of ``config`` (its ``check``), if it declares any."""
    if (spec := get(name).check) is not None:
        _function(spec)(config)


def stages(name: str, run: Any) -> list[Stage]:
    """The stages of algorithm ``name`` for ``run`` (a ``trainer.Run``), in the order of
    its ``stage_names``."""
    algorithm = get(name)
    out = _function(algorithm.stages)(run)
    names = tuple(s.name for s in out)
    if names != algorithm.stage_names:
        raise RuntimeError(f"algorithm {name!r} built stages {names}, but declares {algorithm.stage_names}")
    return out
