"""A ``gs://`` workdir, against a real Cloud Storage emulator served by the test
(gcp-storage-emulator, in memory): every file of the run lands in the bucket
(checkpoints through Orbax/TensorStore, metrics.jsonl, TensorBoard events,
transcripts, evaluations, the tokenizer), none in a local folder named ``gs:``; a run
that lost its last checkpoint resumes from the bucket and ends with the metrics it
had; the tools that read runs (report, compare) read it there."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
from http import HTTPStatus
from pathlib import Path

import pytest

emulator = pytest.importorskip("gcp_storage_emulator.server")
pytest.importorskip("gcsfs")

from etils import epath  # noqa: E402

import runs  # noqa: E402
from archer_jax import provenance, trainer  # noqa: E402
from experiments import compare, report  # noqa: E402
from experiments.configs import guess_city  # noqa: E402

BUCKET = "archer-test"
ROOT = Path(__file__).parent.parent


def _with_generation(read):
    """An emulator handler that reads an object, plus the ``x-goog-generation`` header
    Cloud Storage sends with an object's data and TensorStore reads (the emulator
    leaves it out)."""

    def handler(request, response, storage, *args, **kwargs):
        read(request, response, storage, *args, **kwargs)
        if response.status in (HTTPStatus.OK, HTTPStatus.PARTIAL_CONTENT) and "object_id" in request.params:
            obj = storage.get_file_obj(request.params["bucket_name"], request.params["object_id"])
            response["x-goog-generation"] = str(obj["generation"])
            response["x-goog-metageneration"] = str(obj["metageneration"])

    return handler


@pytest.fixture(scope="module")
def bucket():
    from gcp_storage_emulator.handlers import objects

    for _, handlers in emulator.HANDLERS:
        if handlers.get(emulator.GET) in (objects.download, objects.get):
            handlers[emulator.GET] = _with_generation(handlers[emulator.GET])
    port = runs.free_port()
    server = emulator.create_server("localhost", port, in_memory=True, default_bucket=BUCKET)
    server.start()
    url = f"http://localhost:{port}"
    env = {"STORAGE_EMULATOR_HOST": url, "TENSORSTORE_GCS_HTTP_URL": url, "GOOGLE_AUTH_TOKEN_FOR_TESTING": "test"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    yield f"gs://{BUCKET}"
    # tensorboardX's gs:// writers upload once more when collected: while the server is up.
    gc.collect()
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    server.stop()


def _config():
    config = guess_city.get_config("smoke")
    config.bc.iterations, config.archer.iterations, config.checkpoint_every = 1, 2, 1
    return config


def test_a_bucket_workdir_holds_the_whole_run_and_resumes(bucket, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # the local data cache of a bucket workdir
    workdir = f"{bucket}/runs/gc"
    provenance.record_run(workdir, _config(), ["experiments/run.py", f"--workdir={workdir}"])  # as experiments.run does
    run = trainer.train(_config(), workdir)
    root = epath.Path(workdir)
    assert isinstance(run.workdir, epath.Path) and str(run.workdir) == workdir
    assert not (tmp_path / "gs:").exists()
    for name in ("run_info.jsonl", "metrics.jsonl", "tokenizer/tokenizer.json", "transcripts/archer_000002.txt",
                 "evaluations/archer_00002.json"):
        assert (root / name).exists(), name
    assert list((root / "tensorboard" / "archer").iterdir())
    assert (tmp_path / "home" / ".cache" / "archer_jax" / "data").is_dir()
    steps = sorted(int(p.name) for p in (root / "checkpoints").iterdir() if p.name.isdigit())
    assert steps[-1] == trainer.STAGE_STRIDE + 2
    want = [runs.without_timing(r) for r in runs.rows(root)]
    assert [(r["stage"], r["iteration"]) for r in want] == [("bc", 1), ("archer", 0), ("archer", 1), ("archer", 2)]

    # Lost its last checkpoint (killed while saving it): resumes from the bucket at iteration 1.
    (root / "checkpoints" / str(steps[-1])).rmtree()
    resumed = trainer.train(_config(), workdir)
    assert resumed.progress["iteration"] == 2
    assert [runs.without_timing(r) for r in runs.rows(root)] == want

    # The tools that read finished runs read the bucket too.
    result, curve = report.read_run(workdir), compare.read_curve(workdir)
    assert result.final_iteration == 2 and result.final_eval is not None and result.paired_n == 8
    assert result.final[report.RETURN] == curve["returns"][-1] == want[-1]["eval/return_mean"]
    assert curve["iterations"] == [0, 1, 2] and curve["algorithm"] == "archer"


def test_unreachable_storage_and_other_urls_are_one_message(tmp_path):
    """Storage that does not answer (the emulator's address with nothing listening) and
    a URL scheme other than gs:// end in one ``error:`` line, before anything is written."""
    closed = runs.free_port()
    env = {**os.environ, "STORAGE_EMULATOR_HOST": f"http://localhost:{closed}"}
    for workdir, message in (("gs://archer-test/run", "Cloud Storage cannot be reached"),
                             ("s3://b/run", "s3:// is not supported")):
        out = subprocess.run([sys.executable, "-m", "experiments.run", "--config=guess_city.py:smoke",
                              f"--workdir={workdir}"], cwd=tmp_path, env={**env, "PYTHONPATH": str(ROOT)},
                             capture_output=True, text=True, timeout=300)
        assert out.returncode == 2, out.stderr[-2000:]
        error = [line for line in out.stderr.splitlines() if line.startswith("error:")]
        assert len(error) == 1 and error[0].startswith(f"error: --workdir={workdir}") and message in error[0]
        assert "Traceback" not in out.stderr and not list(tmp_path.iterdir())


def test_the_storage_probe_answers_at_once_and_stands_aside_for_a_proxy(monkeypatch):
    """One connection try says whether the endpoint listens (gcsfs alone would retry a
    refused connection for about 20 s); behind a proxy the client's own retries decide."""
    import socket

    for name in trainer._PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    with socket.create_server(("localhost", 0)) as listening:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://localhost:{listening.getsockname()[1]}")
        assert trainer._unreachable_storage() is None
    closed = runs.free_port()
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://localhost:{closed}")
    assert "ConnectionRefusedError" in trainer._unreachable_storage() and f"localhost:{closed}" in trainer._unreachable_storage()
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
    assert trainer._unreachable_storage() is None
