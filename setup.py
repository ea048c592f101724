"""archer_jax: ArCHer (hierarchical multi-turn RL for LM agents) in JAX/Flax."""

from setuptools import find_packages, setup

setup(
    name="archer_jax",
    version="0.1.0",
    description="JAX/Flax TPU-native trainer for multi-turn language-model agents with ArCHer",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["archer_jax", "archer_jax.*", "experiments", "experiments.*"]),
    install_requires=[
        "jax>=0.6",
        "flax>=0.10",
        "optax>=0.2.4",
        "orbax-checkpoint>=0.11",
        "chex>=0.1.88",
        "ml_collections>=1.0",
        "absl-py>=2.0",
        # Tokenizers and configs only: no torch, no Flax models from transformers.
        "transformers>=4.46",
        "tokenizers>=0.20",
        "huggingface_hub>=0.24",
        # Episode datasets: TFDS builders written as array_record, read without TensorFlow.
        "tensorflow-datasets>=4.9.7",
        "array_record>=0.5",
        "ml_dtypes>=0.4",
        "numpy>=1.26",
        # Console progress bar and TensorBoard event files without TensorFlow.
        "tqdm>=4.66",
        "tensorboardX>=2.6",
    ],
    extras_require={
        # pytest-xdist: the README's test command runs two workers; nbclient and
        # ipykernel execute the Colab notebook; a gs:// workdir is tested against a
        # Cloud Storage emulator; W&B logging is tested offline.
        "test": ["pytest>=8", "pytest-xdist>=3.5", "matplotlib>=3.8", "nbclient>=0.10", "nbformat>=5.10",
                 "ipykernel>=6.29", "gcsfs>=2024.2", "gcp-storage-emulator>=2024.8", "wandb>=0.19"],
        # gs:// workdirs (checkpoints go through Orbax/TensorStore, every other file through gcsfs).
        "gcs": ["gcsfs>=2024.2"],
        # Weights & Biases logging beside TensorBoard (config.logging.wandb_project).
        "wandb": ["wandb>=0.19"],
        # experiments.compare's plot.
        "compare": ["matplotlib>=3.8"],
        "tpu": ["jax[tpu]>=0.6"],
        # Parity checks against the Hugging Face PyTorch models (check --reference) and
        # the oracle-checkpoint converter; never needed to train.
        "reference": ["torch>=2.3"],
        "detective": ["jericho>=3.1", "spacy>=3.7"],
    },
)
