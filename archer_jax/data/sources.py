"""The offline datasets BC can learn from, chosen by `config.data.source`:

- "simulated": the task's scripted players in its environment (`simulated_episodes`);
- "lmrl_gym": LMRL-Gym's published episodes, imported from its JSON files (`lmrl_gym`).

Both give the same transition columns, so the trainer does not care which it reads.
"""

from __future__ import annotations

from collections.abc import Mapping

from etils import epath

from archer_jax.data import lmrl_gym, simulated_episodes
from archer_jax.data.episode_records import Turns

SOURCES = ("simulated", "lmrl_gym")


def turns_from(source: str, *, task: str, data_dir: epath.PathLike, gamma: float,
               manual_dir: epath.PathLike | None = None, num_episodes: int, seed: int,
               max_turns: int = 20, num_items: int = 0,
               env: Mapping[str, object] | None = None,
               mix: Mapping[str, float] | None = None) -> Turns:
    """Every turn of `source`'s episodes of `task` (built or imported first if absent), as
    columns named like `Transition`'s fields, read by row range (`episode_records.Turns`).

    `manual_dir` is read by "lmrl_gym" only; `num_episodes`, `seed`, `max_turns`,
    `num_items`, `env` (the task's other config.env fields) and `mix` (player -> weight;
    None = the task's default) shape the "simulated" episodes only (LMRL-Gym's files are
    taken whole).
    """
    if source == "simulated":
        return simulated_episodes.open_turns(task, data_dir, num_episodes=num_episodes, seed=seed, gamma=gamma,
                                             mix=mix, max_turns=max_turns, num_items=num_items, env=env)
    if source == "lmrl_gym":
        return lmrl_gym.open_turns(task, data_dir, gamma=gamma, manual_dir=manual_dir)
    raise ValueError(f"config.data.source = {source!r}: choose one of {SOURCES}")
