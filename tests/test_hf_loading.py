"""Checkpoint reading: sharded indexes, and one clear error for every kind of mismatch."""

import shutil
import subprocess
import sys

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from archer_jax.models import check, hf_loading, registry


def _copy_with(tmp_path, hf_fixtures, edit):
    folder = tmp_path / "gpt2"
    shutil.copytree(hf_fixtures / "gpt2", folder)
    tensors = load_file(folder / "model.safetensors")
    edit(tensors)
    save_file(tensors, folder / "model.safetensors")
    return folder


def test_reader_handles_sharded_index(hf_fixtures):
    reader = hf_loading.CheckpointReader(hf_fixtures / "llama")
    assert len(list((hf_fixtures / "llama").glob("model-*.safetensors"))) > 1
    assert "lm_head.weight" in reader.keys()
    assert reader.get("model.norm.weight").shape == (48,)


def test_mismatches_are_listed_in_one_error(tmp_path, hf_fixtures):
    def edit(t):
        del t["transformer.h.1.mlp.c_fc.bias"]
        t["transformer.h.0.extra.weight"] = np.zeros((2,), np.float32)
        t["transformer.wpe.weight"] = np.zeros((31, 24), np.float32)

    folder = _copy_with(tmp_path, hf_fixtures, edit)
    with pytest.raises(hf_loading.CheckpointError) as err:
        registry.load_pretrained(str(folder))
    msg = str(err.value)
    assert "missing tensors (1): h.1.mlp.c_fc.bias" in msg
    assert "unexpected tensors (1): h.0.extra.weight" in msg
    assert "wpe.weight -> wpe/embedding: checkpoint gives (31, 24), model needs (32, 24)" in msg


def test_checkpoint_without_prefix_loads(tmp_path, hf_fixtures):
    def strip(t):
        for k in list(t):
            t[k.removeprefix("transformer.")] = t.pop(k)

    folder = _copy_with(tmp_path, hf_fixtures, strip)
    model = registry.load_pretrained(str(folder))
    ref = registry.load_pretrained(str(hf_fixtures / "gpt2"))
    np.testing.assert_array_equal(np.asarray(model.params["wte"]["embedding"]),
                                  np.asarray(ref.params["wte"]["embedding"]))


def test_bf16_checkpoint_loads_into_fp32_params(tmp_path, hf_fixtures):
    import ml_dtypes

    def to_bf16(t):
        for k in t:
            t[k] = t[k].astype(ml_dtypes.bfloat16)

    folder = _copy_with(tmp_path, hf_fixtures, to_bf16)
    model = registry.load_pretrained(str(folder))
    wte = model.params["wte"]["embedding"]
    assert wte.dtype == np.float32
    ref = load_file(hf_fixtures / "gpt2" / "model.safetensors")["transformer.wte.weight"]
    np.testing.assert_allclose(np.asarray(wte), ref, atol=1e-2)


@pytest.mark.parametrize("case", ["no_folder", "no_config", "no_weights", "corrupt", "bin_only", "unknown_type"])
def test_bad_folders_name_the_file(tmp_path, hf_fixtures, case):
    folder = tmp_path / "model"
    if case != "no_folder":
        shutil.copytree(hf_fixtures / "gpt2", folder)
    if case == "no_config":
        (folder / "config.json").unlink()
    elif case in ("no_weights", "bin_only"):
        (folder / "model.safetensors").unlink()
        if case == "bin_only":
            (folder / "pytorch_model.bin").write_bytes(b"x")
    elif case == "corrupt":
        (folder / "model.safetensors").write_bytes(b"\xff" * 16)
    elif case == "unknown_type":
        (folder / "config.json").write_text('{"model_type": "bert"}')
    with pytest.raises(hf_loading.CheckpointError) as err:
        registry.load_pretrained(str(folder))
    msg = str(err.value)
    expected = {
        "no_folder": "no such model folder", "no_config": "no config.json",
        "no_weights": "no model.safetensors", "corrupt": "model.safetensors: not a readable safetensors file",
        "bin_only": "convert them to safetensors", "unknown_type": "model_type 'bert' is not supported",
    }[case]
    assert expected in msg


def test_unreachable_hub_name_says_what_to_do(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(hf_loading.CheckpointError, match="huggingface-cli download some-org/no-such-model"):
        hf_loading.resolve_folder("some-org/no-such-model")


def test_check_command_runs_on_a_fixture(hf_fixtures):
    out = subprocess.run([sys.executable, "-m", "archer_jax.models.check", str(hf_fixtures / "gpt2")],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "gpt2 (causal_lm)" in out.stdout and "flax logits: shape (2, 12, 320)" in out.stdout


@pytest.mark.parametrize("name", ["gpt2", "llama", "mistral", "roberta", "t5_tied"])
def test_check_reference_agrees_with_pytorch(hf_fixtures, name, capsys):
    pytest.importorskip("torch")
    assert check.main([str(hf_fixtures / name), "--reference", "--atol", "1e-4"]) == 0
    out = capsys.readouterr().out
    assert "PASS: max abs difference" in out and "max |flax - torch|" in out
    # A tolerance no float32 computation meets: the same comparison fails, exit status 1.
    assert check.main([str(hf_fixtures / name), "--reference", "--atol", "1e-12"]) == 1
    assert "FAIL: max abs difference" in capsys.readouterr().out


def test_check_reference_command(hf_fixtures):
    pytest.importorskip("torch")
    out = subprocess.run([sys.executable, "-m", "archer_jax.models.check", str(hf_fixtures / "t5"), "--reference"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "t5 (seq2seq)" in out.stdout and "max |flax - torch| logits:" in out.stdout
    worst = float(out.stdout.split("PASS: max abs difference ")[1].split()[0])
    assert 0 < worst <= 1e-4
