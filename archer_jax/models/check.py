"""Checks a Hugging Face checkpoint against this library's Flax implementation.

    python -m archer_jax.models.check /path/to/hf_folder [--reference]

Loads the folder, runs the Flax model on fixed token ids (a batch of two rows, the
first one padded), prints shapes and a summary of the outputs. With ``--reference``
(needs torch and transformers) it runs the Hugging Face PyTorch model on the same ids
and prints the largest absolute difference over real tokens; the exit status is 1
when that exceeds ``--atol`` (1e-4 suits fp32).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import jax
import numpy as np

from archer_jax.models import hf_loading, registry


def _inputs(kind: str, config: Any, hf_config: dict, batch: int, length: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    vocab = hf_config["vocab_size"]
    ids = rng.integers(min(5, vocab - 1), vocab, size=(batch, length))
    mask = np.ones((batch, length), np.int64)
    pad_id = hf_config.get("pad_token_id") or 0
    if kind == "causal_lm":
        mask[0, : length // 3] = 0  # left padding, as the actor's prompts are
    else:
        mask[0, length - length // 3:] = 0  # right padding, as HF tokenizers pad encoders
    ids[mask == 0] = pad_id
    out = {"input_ids": ids, "attention_mask": mask}
    if kind == "seq2seq":
        start = hf_config.get("decoder_start_token_id") or 0
        dec = rng.integers(min(5, vocab - 1), vocab, size=(batch, max(2, length // 2)))
        dec[:, 0] = start
        out["decoder_input_ids"] = dec
    return out


def run_flax(model: registry.Pretrained, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    kind = model.family.kind
    variables = {"params": model.params}

    @jax.jit
    def forward(variables: Any, inputs: dict[str, np.ndarray]) -> dict[str, jax.Array]:
        if kind == "causal_lm":
            return {"logits": model.module.apply(variables, inputs["input_ids"], inputs["attention_mask"]).logits}
        if kind == "encoder":
            out = model.module.apply(variables, inputs["input_ids"], inputs["attention_mask"])
            return {"last_hidden_state": out.hidden, "pooler_output": out.pooled}
        return {"logits": model.module.apply(variables, inputs["input_ids"], inputs["attention_mask"],
                                             inputs["decoder_input_ids"])}

    return jax.tree.map(np.asarray, jax.device_get(forward(variables, inputs)))


def run_reference(folder: str, kind: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    try:
        import torch
        import transformers
    except ImportError as e:
        raise SystemExit(f"--reference needs torch and transformers installed ({e}); "
                         "pip install 'archer_jax[reference]'") from e
    cls = {"causal_lm": transformers.AutoModelForCausalLM, "encoder": transformers.AutoModel,
           "seq2seq": transformers.AutoModelForSeq2SeqLM}[kind]
    model = cls.from_pretrained(folder, dtype=torch.float32).eval()
    t = {k: torch.tensor(v) for k, v in inputs.items()}
    with torch.no_grad():
        if kind == "causal_lm":
            positions = torch.clamp(torch.cumsum(t["attention_mask"], -1) - 1, min=0)
            return {"logits": model(**t, position_ids=positions).logits.float().numpy()}
        out = model(**t)
        if kind == "encoder":
            return {"last_hidden_state": out.last_hidden_state.float().numpy(),
                    "pooler_output": out.pooler_output.float().numpy()}
        return {"logits": out.logits.float().numpy()}


def _real(name: str, value: np.ndarray, inputs: dict[str, np.ndarray], kind: str) -> np.ndarray:
    """Values at real (unpadded) tokens only: padded slots are undefined."""
    if name == "pooler_output":
        return value
    if kind == "seq2seq":
        return value  # decoder ids are unpadded
    return value[inputs["attention_mask"].astype(bool)]


def summarize(name: str, value: np.ndarray) -> str:
    return (f"{name}: shape {tuple(value.shape)} mean {value.mean():+.5f} std {value.std():.5f} "
            f"min {value.min():+.4f} max {value.max():+.4f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", help="a Hugging Face model folder (config.json + safetensors) or hub name")
    parser.add_argument("--reference", action="store_true", help="compare with the HF PyTorch model (needs torch)")
    parser.add_argument("--atol", type=float, default=1e-4, help="largest allowed absolute difference")
    parser.add_argument("--length", type=int, default=12, help="tokens per row of the fixed input")
    parser.add_argument("--seed", type=int, default=0, help="seed of the fixed token ids")
    args = parser.parse_args(argv)

    try:
        model = registry.load_pretrained(args.folder)
    except hf_loading.CheckpointError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    hf_config = hf_loading.read_config(hf_loading.resolve_folder(model.folder))
    kind = model.family.kind
    n_params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(model.params))
    print(f"{model.folder}: {model.family.name} ({kind}), {n_params:,} parameters")
    inputs = _inputs(kind, model.config, hf_config, batch=2, length=args.length, seed=args.seed)
    outputs = run_flax(model, inputs)
    for name, value in outputs.items():
        print("flax " + summarize(name, value))
    if not args.reference:
        return 0
    reference = run_reference(model.folder, kind, inputs)
    worst = 0.0
    for name, value in outputs.items():
        diff = float(np.max(np.abs(_real(name, value, inputs, kind) - _real(name, reference[name], inputs, kind))))
        worst = max(worst, diff)
        print(f"max |flax - torch| {name}: {diff:.3e}")
    ok = worst <= args.atol
    print(f"{'PASS' if ok else 'FAIL'}: max abs difference {worst:.3e} (atol {args.atol:g})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
