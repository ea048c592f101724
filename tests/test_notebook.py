"""notebooks/archer_jax_colab.ipynb, executed as Colab would run it (a Jupyter kernel, its
cells in order), at the smoke variant the notebook switches to when
ARCHER_JAX_NOTEBOOK_SMOKE=1: it finds the clone it sits in, trains, plots the learning
curve, reports the gain and prints the transcripts."""

import base64
from pathlib import Path

import pytest

nbclient = pytest.importorskip("nbclient")
nbformat = pytest.importorskip("nbformat")
pytest.importorskip("ipykernel")

NOTEBOOK = Path(__file__).parent.parent / "notebooks" / "archer_jax_colab.ipynb"


def _text(cell) -> str:
    out = []
    for o in cell.get("outputs", []):
        out.append(o.get("text", "") or o.get("data", {}).get("text/plain", ""))
    return "".join(out)


def test_the_colab_notebook_trains_plots_and_shows_the_agent(tmp_path, monkeypatch):
    monkeypatch.setenv("ARCHER_JAX_NOTEBOOK_SMOKE", "1")
    monkeypatch.setenv("ARCHER_JAX_NOTEBOOK_WORKDIR", str(tmp_path / "run"))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert "JAX" in _text(code[0]) and "CpuDevice" in _text(code[0])  # set up in the clone, on this kernel
    assert (tmp_path / "run" / "metrics.jsonl").is_file()  # trained into the notebook's WORKDIR
    pngs = [o["data"]["image/png"] for c in code for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(pngs) == 1 and base64.b64decode(pngs[0]).startswith(b"\x89PNG")  # the learning curve
    texts = "".join(_text(c) for c in code)
    assert "BC start: return" in texts and "ArCHer iterations: return" in texts
    assert "Questions:" in texts  # a transcript of the trained agent's games
