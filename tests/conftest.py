"""Tests run on 8 fake CPU devices so sharded code paths are exercised."""

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="session")
def hf_fixtures() -> Path:
    """Tiny Hugging Face checkpoints written by tests/fixtures/make_hf_fixtures.py."""
    return FIXTURES / "hf"
