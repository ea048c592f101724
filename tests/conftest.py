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
# test_offline_archer.py + test_filtered_bc.py 157 s -> 131 s), and fusions go through XLA's
# older elemental emitters, which compile in about half the time of the MLIR fusion emitters
# (the tiny critic phase 4.8 -> 2.6 s; the whole suite, -n 2 on 2 cores: 974 -> 756 s).
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8 --xla_backend_optimization_level=0 "
                      "--xla_llvm_disable_expensive_passes=true --xla_cpu_use_fusion_emitters=false")
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


# pytest-xdist (``-n 2 --dist loadfile``) hands out whole files, by default those with the
# most tests first. These files hold few tests but take minutes each (training runs in
# subprocesses: killed and resumed, several processes, whole commands); handed out last,
# they left one worker running alone at the end. They go first, longest first (per
# ``--durations``); the other files keep their order.
LONG_FILES = ("test_trainer.py", "test_multihost.py", "test_resume.py", "test_archer_steps.py",
              "test_length_buckets.py", "test_use_policy.py")


def pytest_configure(config) -> None:
    if hasattr(config.option, "loadscopereorder"):  # pytest-xdist's reordering by test count
        config.option.loadscopereorder = False


def pytest_collection_modifyitems(config, items) -> None:
    del config
    rank = {name: i for i, name in enumerate(LONG_FILES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: in-file order kept


def pytest_sessionfinish(session, exitstatus) -> None:
    del session, exitstatus
    if _XLA_CACHE is not None:
        shutil.rmtree(_XLA_CACHE, ignore_errors=True)
