"""archer_jax: ArCHer (hierarchical multi-turn RL for LM agents) in JAX/Flax."""

import os

# transformers is used for tokenizers and configs only, never with torch: its
# "PyTorch was not found" advice on import is noise for every user of this package.
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
