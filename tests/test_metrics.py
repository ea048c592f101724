"""metrics.jsonl lines, resume truncation, transcripts, TensorBoard files and W&B."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

import runs
from archer_jax import metrics

ROOT = Path(__file__).resolve().parents[1]


def _lines(workdir):
    return [json.loads(line) for line in (workdir / metrics.METRICS_FILE).read_text().splitlines()]


def test_jsonl_lines_from_device_values(tmp_path):
    with metrics.MetricsLogger(tmp_path, total_iterations=3, console=False) as logger:
        for it in range(3):
            values = logger.log("archer", it, {
                "critic": {"q1_loss": jnp.float32(0.5 * it)},
                "rollout/return_mean": jnp.asarray(-3.0 + it),
                "rollout/success": np.bool_(it == 2),
                "actor/token_logprob": jnp.arange(3.0),
                "env_steps": 16 * (it + 1),
            })
        assert values["critic/q1_loss"] == 1.0 and isinstance(values["critic/q1_loss"], float)
    lines = _lines(tmp_path)
    assert [(r["stage"], r["iteration"]) for r in lines] == [("archer", 0), ("archer", 1), ("archer", 2)]
    assert lines[2]["critic/q1_loss"] == 1.0 and lines[2]["rollout/return_mean"] == -1.0
    assert lines[2]["rollout/success"] is True and lines[2]["actor/token_logprob"] == [0.0, 1.0, 2.0]
    assert lines[0]["env_steps"] == 16 and "time" in lines[0]
    events = list((tmp_path / metrics.TENSORBOARD_DIR / "archer").glob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 0


def test_resume_drops_stale_lines_of_the_stage(tmp_path):
    with metrics.MetricsLogger(tmp_path, total_iterations=10, console=False) as logger:
        for it in range(3):
            logger.log("bc", it, {"bc/loss": 1.0})
        for it in range(6):
            logger.log("archer", it, {"critic/q1_loss": float(it)})
    with (tmp_path / metrics.METRICS_FILE).open("a") as f:
        f.write('{"stage": "archer", "iteration": 6, "crit')  # a line cut by kill -9
    # Resumed from a checkpoint at archer iteration 4: iterations 4 and 5 are redone.
    with metrics.MetricsLogger(tmp_path, total_iterations=10, console=False) as logger:
        logger.start_stage("archer", start_iteration=4)
        logger.log("archer", 4, {"critic/q1_loss": 40.0})
    lines = _lines(tmp_path)
    assert [(r["stage"], r["iteration"]) for r in lines] == [
        ("bc", 0), ("bc", 1), ("bc", 2), ("archer", 0), ("archer", 1), ("archer", 2), ("archer", 3), ("archer", 4)]
    assert lines[-1]["critic/q1_loss"] == 40.0
    # Without start_stage the first log of a stage marks the resume point.
    with metrics.MetricsLogger(tmp_path, total_iterations=10, console=False) as logger:
        logger.log("archer", 2, {"critic/q1_loss": 20.0})
    assert [r["iteration"] for r in _lines(tmp_path) if r["stage"] == "archer"] == [0, 1, 2]


def test_transcripts_file(tmp_path):
    logger = metrics.MetricsLogger(tmp_path, total_iterations=1, console=False)
    path = logger.write_transcripts("archer", 12, ["Is it Paris?\nNo.", "Is it Rome?\nYes."])
    logger.close()
    assert path == tmp_path / metrics.TRANSCRIPTS_DIR / "archer_000012.txt"
    text = path.read_text()
    assert "iteration 12" in text and "dialogue 1" in text and "Is it Rome?\nYes." in text


def test_disabled_logger_writes_nothing(tmp_path):
    with metrics.MetricsLogger(tmp_path / "run", total_iterations=1, enabled=False) as logger:
        assert logger.log("archer", 0, {"a": 1.0}) == {}
        assert logger.write_transcripts("archer", 0, ["x"]) is None
    assert not (tmp_path / "run").exists()


def test_progress_bar_postfix(tmp_path, capsys):
    with metrics.MetricsLogger(tmp_path, total_iterations=4, postfix_keys=["rollout/return_mean"]) as logger:
        logger.log("archer", 1, {"rollout/return_mean": -2.5, "critic/q1_loss": 0.1})
        assert logger._bar.n == 2 and logger._bar.postfix == "rollout/return_mean=-2.5"


def test_weights_and_biases_gets_every_scalar_and_a_resume_continues_its_run(tmp_path, monkeypatch):
    """Offline W&B (the real client, its run file read back): each logged row, as
    ``<stage>/<metric>`` against ``<stage>/iteration``; a second life of the logger on the
    workdir (a resume) continues the W&B run of the first, by the id kept in the workdir."""
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    settings = dict(total_iterations=3, console=False, wandb_project="archer-test", wandb_config={"seed": 7})
    with metrics.MetricsLogger(tmp_path, **settings) as log:
        log.log("bc", 1, {"bc/loss": np.float32(0.5), "eval/return_mean": -3.0})
        log.log("archer", 0, {"eval/return_mean": -2.5, "rollout/returns": [1.0, 2.0]})
    with metrics.MetricsLogger(tmp_path, **settings) as log:
        log.start_stage("archer", start_iteration=1)
        log.log("archer", 1, {"critic/q1_loss": jnp.float32(0.25), "eval/return_mean": -2.0})
    run_id = (tmp_path / "wandb_id").read_text().strip()
    # two lives in one second: W&B names the second folder offline-run-<time>-<id>-1
    files = sorted((tmp_path / "wandb").glob(f"offline-run-*-{run_id}*/run-{run_id}.wandb"))
    assert files, sorted(p.name for p in (tmp_path / "wandb").iterdir())
    history = [row for file in files for row in runs.wandb_history(file)]
    assert history == [{"bc/iteration": 1, "bc/bc/loss": 0.5, "bc/eval/return_mean": -3.0},
                       {"archer/iteration": 0, "archer/eval/return_mean": -2.5},
                       {"archer/iteration": 1, "archer/critic/q1_loss": 0.25, "archer/eval/return_mean": -2.0}]


@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="PyTorch is not installed: nothing to keep out")
def test_tensorboard_events_are_written_without_importing_torch(tmp_path):
    """tensorboardX imports torch whenever it is installed (seconds of start-up, 185 MB);
    the logger keeps it out, and the user's own ``import torch`` still works after it."""
    script = f"""
import sys
from archer_jax import metrics
with metrics.MetricsLogger({str(tmp_path)!r}, total_iterations=1, console=False) as logger:
    logger.log("bc", 0, {{"bc/loss": 1.0}})
print("torch" in sys.modules)
import torch
print(torch.ones(2).sum().item())
"""
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["False", "2.0"]
    assert list((tmp_path / metrics.TENSORBOARD_DIR / "bc").glob("events.out.tfevents.*"))
