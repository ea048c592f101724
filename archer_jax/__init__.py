"""archer_jax: ArCHer (hierarchical multi-turn RL for LM agents) in JAX/Flax."""

import os

# transformers is used for tokenizers and configs only, never with torch: its
# "PyTorch was not found" advice on import is noise for every user of this package.
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")

from archer_jax import host_malloc

# Before XLA's threads first allocate: its per-call buffers are then reused instead of
# mapped and page-faulted in on every call (host_malloc's docstring; docs/benchmarks.md).
host_malloc.configure()
