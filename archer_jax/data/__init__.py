"""Datasets and text handling.

- simulated_episodes: TFDS builder (ArrayRecord) of scripted question-game episodes,
  `load_episodes`, `load_transitions`, `episode_transitions`, `task_corpus`.
- tokenization: text <-> fixed-shape id arrays.

Submodules are imported explicitly (`from archer_jax.data import simulated_episodes`):
this package imports nothing itself, so tokenization users do not pay for TFDS.
"""
