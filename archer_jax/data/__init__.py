"""Datasets and text handling.

- simulated_episodes: TFDS builder (ArrayRecord) of a task's scripted players' episodes,
  `load_episodes`, `load_transitions`, `episode_transitions`, `task_corpus`.
- lmrl_gym: TFDS builder importing LMRL-Gym's offline JSON episodes (manual download).
- episode_records: the episode record both builders store, its reading and transitions.
- sources: `turns_from(config.data.source, ...)`, the BC data switch (turns read by row range).
- tokenization: text <-> fixed-shape id arrays.

Submodules are imported explicitly (`from archer_jax.data import simulated_episodes`):
this package imports nothing itself, so tokenization users do not pay for TFDS.
"""
