"""archer_jax.provenance: what each invocation of a run records in run_info.jsonl, and
that the entry point records it before training."""

import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from absl import flags

from archer_jax import provenance
from experiments.configs import guess_city

ROOT = Path(__file__).parent.parent


def _head_commit() -> str | None:
    if shutil.which("git") is None:
        return None
    done = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True)
    return done.stdout.strip() if done.returncode == 0 else None


def test_each_invocation_appends_one_entry(tmp_path):
    workdir = tmp_path / "new" / "run"  # created if missing
    config = guess_city.get_config("smoke")
    first = provenance.record_run(workdir, config, ["run.py", "--config=guess_city.py:smoke", "--workdir=x"])
    provenance.record_run(workdir, config, ["run.py", "--config=guess_city.py:smoke", "--workdir=x", "--config.seed=3"])
    lines = (workdir / "run_info.jsonl").read_text().splitlines()
    assert len(lines) == 2
    entries = provenance.read_run_info(workdir)
    assert entries[0] == json.loads(lines[0]) == first
    assert entries[1]["argv"][-1] == "--config.seed=3"
    assert set(first) == {"time", "argv", "cwd", "git", "python", "packages", "machine", "config"}
    assert first["python"] == ".".join(map(str, sys.version_info[:3]))
    assert first["packages"]["jax"] == importlib.metadata.version("jax")
    assert set(first["packages"]) == set(provenance.PACKAGES)
    # The resolved config as JSON: tuples become lists, every field survives.
    assert first["config"]["task"] == "guess_city" and first["config"]["archer"]["eval_size"] == 8
    assert first["config"]["mesh"]["shape"] == [-1, 1, 1]
    commit = _head_commit()
    if commit is None:  # a copy without git: recorded as unknown, never an error
        assert first["git"] == {"commit": None, "dirty": None, "changed": None}
    else:
        assert first["git"]["commit"] == commit and isinstance(first["git"]["dirty"], bool)


def test_no_git_or_no_repository_gives_null(tmp_path, monkeypatch):
    unknown = {"commit": None, "dirty": None, "changed": None}
    assert provenance.git_state(tmp_path) == unknown  # not inside a checkout
    monkeypatch.setenv("PATH", str(tmp_path))  # no git executable at all
    assert provenance.git_state() == unknown
    entry = provenance.record_run(tmp_path / "run", {"seed": 0}, ["run.py"])
    assert entry["git"] == unknown and entry["config"] == {"seed": 0}


def test_dirty_tree_lists_the_changed_files(tmp_path):
    if shutil.which("git") is None:
        pytest.skip("no git")
    git = ["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "a.py").write_text("x = 1\n")
    subprocess.run([*git, "add", "pkg/a.py"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "a"], check=True)
    clean = provenance.git_state(tmp_path / "pkg")
    assert len(clean["commit"]) == 40 and clean["dirty"] is False and clean["changed"] == []
    (tmp_path / "pkg" / "a.py").write_text("x = 2\n")
    (tmp_path / "pkg" / "untracked.py").write_text("")  # untracked files do not count
    assert provenance.git_state(tmp_path / "pkg") == {**clean, "dirty": True, "changed": ["pkg/a.py"]}
    # An untracked folder inside a checkout (a venv's site-packages) is not its source.
    (tmp_path / "venv").mkdir()
    assert provenance.git_state(tmp_path / "venv")["commit"] is None


def test_unknown_package_is_null():
    assert provenance.package_versions(["numpy", "no-such-package-xyz"]) == {
        "numpy": importlib.metadata.version("numpy"), "no-such-package-xyz": None}


def test_a_broken_line_is_named(tmp_path):
    (tmp_path / "run_info.jsonl").write_text('{"argv": []}\n{"argv": [\n')
    with pytest.raises(ValueError, match=r"run_info.jsonl:2: not a JSON line"):
        provenance.read_run_info(tmp_path)
    # Appending after a line cut short keeps the new entry on a line of its own.
    provenance.record_run(tmp_path, {"seed": 1}, ["run.py"])
    assert json.loads((tmp_path / "run_info.jsonl").read_text().splitlines()[-1])["config"] == {"seed": 1}


def test_the_entry_point_records_before_training(tmp_path, monkeypatch):
    from archer_jax import trainer
    from experiments import run

    seen = []
    monkeypatch.setattr(trainer, "train", lambda config, workdir: seen.append(provenance.read_run_info(workdir)))
    typed = ["/x/experiments/run.py", "--config=guess_city.py:smoke", "--config.archer.iterations=3",
             f"--workdir={tmp_path}"]
    monkeypatch.setattr(run, "_COMMAND_LINE", typed)
    monkeypatch.setattr(sys, "argv", run.resolve_config_path(typed))  # config_flags reads overrides there
    flags.FLAGS(sys.argv)
    try:
        run.main([])
    finally:
        flags.FLAGS.unparse_flags()
    (entries,) = seen  # written before train() started
    assert len(entries) == 1 and entries[0]["argv"] == typed
    assert entries[0]["config"]["archer"]["iterations"] == 3  # after the override
    assert entries[0]["machine"]["devices"]["platform"] == "cpu"
    cpu = entries[0]["machine"]["cpu"]  # what decides XLA's CPU code: read from /proc/cpuinfo here
    assert cpu["model"] and set(cpu["simd"]) <= set(provenance._SIMD_FLAGS)
    if os.path.exists("/proc/cpuinfo"):
        assert ("avx2" in cpu["simd"]) == (" avx2" in open("/proc/cpuinfo").read())
