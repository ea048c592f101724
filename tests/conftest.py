"""Tests run on 8 fake CPU devices so sharded code paths are exercised.

The whole session (and every subprocess it starts: the environment is inherited) shares
one persistent XLA compilation cache in a temporary folder removed at the end: most
tests build the same smoke-sized programs, and compiling them dominates a smoke run
(measured: 148 s for the first `experiments.run ... :smoke`, 41 s for the next with the
cache warm). A cache hit still counts as a compile for `time/compiles` (JAX records
the compile event around the cache lookup), so the compile-count tests are unchanged.
"""

import os
import shutil
import tempfile

# The backend's LLVM optimisation is off (level 0, no expensive passes): the tests' programs
# are tiny and compiling them dominates the suite; their numerics are XLA's either way
# (measured on the 2-core machine: tests/test_archer_steps.py 133 s -> 98 s,
# test_offline_archer.py + test_filtered_bc.py 157 s -> 131 s).
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8 --xla_backend_optimization_level=0 "
                      "--xla_llvm_disable_expensive_passes=true")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
_XLA_CACHE = None
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    _XLA_CACHE = tempfile.mkdtemp(prefix="archer-jax-tests-xla-cache-")
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _XLA_CACHE
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="session")
def hf_fixtures() -> Path:
    """Tiny Hugging Face checkpoints written by tests/fixtures/make_hf_fixtures.py."""
    return FIXTURES / "hf"


@pytest.fixture(scope="session")
def archer_smoke_run(tmp_path_factory):
    """A finished Guess My City smoke run (ArCHer from a random actor, no BC) and its
    folder, shared by the tools that read a run folder (their tests leave it as it is)."""
    from archer_jax import trainer
    from experiments.configs import guess_city

    workdir = tmp_path_factory.mktemp("smoke_run")
    config = guess_city.get_config("smoke")
    config.bc.iterations = 0
    return trainer.train(config, workdir), workdir


def pytest_sessionfinish(session, exitstatus) -> None:
    del session, exitstatus
    if _XLA_CACHE is not None:
        shutil.rmtree(_XLA_CACHE, ignore_errors=True)


# Each file's share of the suite's test time (seconds, `python -m pytest -v -n 2 --dist loadfile
# tests --durations=0`, setup + call + teardown summed per file, 2026-12-07, the machine loaded,
# so only the order matters). With `--dist loadfile` xdist deals whole files to the two
# workers; by default it queues them by their NUMBER of tests, so files of one or two long
# tests (the two-process run, the kill-and-resume runs) come last and one worker runs them
# while the other idles. Queued longest first (the files not listed after them, in collection
# order), the workers end close together.
FILE_SECONDS = {
    "test_trainer.py": 1156, "test_archer_steps.py": 849, "test_use_policy.py": 575, "test_length_buckets.py": 565,
    "test_privileged_critic.py": 524, "test_lora.py": 450, "test_offline_archer.py": 307,
    "test_filtered_bc.py": 281, "test_resume.py": 279, "test_webshop.py": 273, "test_detective.py": 250,
    "test_benchmarks.py": 237, "test_t5.py": 216, "test_memory_plan.py": 215, "test_env_contract.py": 214,
    "test_ppo.py": 214, "test_probe_guesses.py": 212, "test_multihost.py": 208, "test_lm_oracle.py": 192,
    "test_probe_critic.py": 183, "test_sampling.py": 169, "test_fit_critic.py": 163, "test_gcs_workdir.py": 142,
    "test_llama.py": 115, "test_fit_contrast.py": 115, "test_hf_loading.py": 105,
}


def pytest_configure(config) -> None:
    if hasattr(config.option, "loadscopereorder"):  # pytest-xdist: keep the order set below
        config.option.loadscopereorder = False


def pytest_collection_modifyitems(config, items) -> None:
    del config
    items.sort(key=lambda item: -FILE_SECONDS.get(item.path.name, 0))  # stable: each file's tests keep their order
