"""host_malloc: with the package imported, a jitted program whose buffers exceed glibc's
mmap limits reuses them between calls instead of faulting fresh pages in each call; the
user's own malloc variables are left alone. Counted in page faults (getrusage), which do
not depend on the machine's speed."""

import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from archer_jax import host_malloc

pytestmark = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's malloc only")

SCRIPT = """
import resource, jax, jax.numpy as jnp
import archer_jax
# An intermediate of 64 MiB ([8192, 2048] float32): above glibc's mmap threshold (<= 32 MiB).
step = jax.jit(lambda x, w: jnp.sum(jax.nn.gelu(x @ w) @ w.T))
x, w = jnp.ones((8192, 256)), jnp.ones((256, 2048))
for _ in range(3):
    step(x, w).block_until_ready()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    step(x, w).block_until_ready()
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 5)
"""


def faults_per_call(extra_env: dict[str, str]) -> float:
    env = {k: v for k, v in os.environ.items() if k not in host_malloc.USER_VARIABLES}
    env.update(extra_env)
    out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, check=True,
                         cwd=Path(__file__).parents[1])
    return float(out.stdout.split()[-1])


def test_buffers_are_reused_between_calls_unless_the_user_set_malloc():
    kept = faults_per_call({})
    mapped = faults_per_call({"MALLOC_ARENA_MAX": "8"})  # the user's setting: configure() stands back
    assert kept < 200  # a 64 MiB buffer is 16,384 pages
    assert mapped > 10_000


def test_configure_stands_back_for_the_users_variables(monkeypatch):
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "131072")
    assert host_malloc.configure() is False
