"""Converts the reference's oracle checkpoints (PyTorch .pt) into Hugging Face folders.

The reference (github.com/YifeiZhou02/ArCHer) builds its Twenty Questions and Guess My
City oracles as flan-t5-small with ``load_state_dict(torch.load(path)['model_state_dict'])``.
This writes those weights as config.json + model.safetensors + tokenizer files, which
``registry.load_pretrained`` and ``envs.lm_oracle.make_lm_oracle`` read without torch:

    python -m archer_jax.models.convert_reference_oracle 20q_t5_oracle.pt --out oracles/20q \\
        --base google/flan-t5-small

``--base`` (a flan-t5 folder or hub name) gives the config and the tokenizer; without
it the config is inferred from the tensor shapes (assuming flan-t5's gated-gelu
feed-forward and relative_attention_max_distance 128, which no tensor records) and the
tokenizer files must be added by hand. Needs torch: ``pip install -e '.[reference]'``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import shutil
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from archer_jax.models import hf_loading, registry, t5

# What a base folder lends the converted one besides its weights.
BASE_FILES = ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
              "special_tokens_map.json", "added_tokens.json", "spiece.model")
# Training wrappers prefix every name: DataParallel/accelerate 'module.', agent classes 'model.'.
_WRAPPER_PREFIXES = ("module.", "model.")
# Copies of the shared embedding a T5 state_dict repeats; the loader reads 'shared.weight'.
_EMBED_COPIES = ("encoder.embed_tokens.weight", "decoder.embed_tokens.weight")
_FLAN_T5 = {(512, 8): "google/flan-t5-small", (768, 12): "google/flan-t5-base", (1024, 24): "google/flan-t5-large",
            (2048, 24): "google/flan-t5-xl", (4096, 24): "google/flan-t5-xxl"}
_BLOCK_RE = re.compile(r"^(encoder|decoder)\.block\.(\d+)\.")


def _import_torch() -> Any:
    try:
        import torch
    except ImportError as e:
        raise ImportError("converting a PyTorch .pt checkpoint needs torch: pip install -e '.[reference]'") from e
    return torch


def read_state_dict(path: Path) -> dict[str, Any]:
    """The checkpoint's 'model_state_dict' (torch tensors), wrapper prefixes removed."""
    torch = _import_torch()
    if not path.is_file():
        raise hf_loading.CheckpointError(f"{path}: no such file")
    try:
        # weights_only: a state dict needs no arbitrary unpickling.
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    # torch raises many kinds for a file it cannot read; all get the same message.
    except Exception as e:
        raise hf_loading.CheckpointError(
            f"{path}: torch.load cannot read it ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from e
    if not isinstance(checkpoint, Mapping) or "model_state_dict" not in checkpoint:
        found = sorted(map(str, checkpoint)) if isinstance(checkpoint, Mapping) else type(checkpoint).__name__
        raise hf_loading.CheckpointError(
            f"{path}: no 'model_state_dict' key (found: {found}); expected the reference's "
            "{'model_state_dict': <T5ForConditionalGeneration state_dict>}")
    state = checkpoint["model_state_dict"]
    if not isinstance(state, Mapping) or not state or not all(torch.is_tensor(v) for v in state.values()):
        raise hf_loading.CheckpointError(f"{path}: 'model_state_dict' is not a non-empty dict of tensors")
    state = dict(state)
    stripped = True
    while stripped:
        stripped = False
        for prefix in _WRAPPER_PREFIXES:
            if all(k.startswith(prefix) for k in state):
                state = {k[len(prefix):]: v for k, v in state.items()}
                stripped = True
    return state


def infer_hf_config(shapes: Mapping[str, Sequence[int]], path: Path) -> dict[str, Any]:
    """A T5 config.json dict read off the tensor shapes."""
    try:
        vocab_size, d_model = shapes["shared.weight"]
        buckets, heads = shapes["encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"]
        inner = shapes["encoder.block.0.layer.0.SelfAttention.q.weight"][0]
        gated = "encoder.block.0.layer.1.DenseReluDense.wi_0.weight" in shapes
        d_ff = shapes[f"encoder.block.0.layer.1.DenseReluDense.{'wi_0' if gated else 'wi'}.weight"][0]
    except (KeyError, ValueError) as e:
        raise hf_loading.CheckpointError(
            f"{path}: the tensors do not form a T5 model (missing or odd {e}); "
            f"found e.g. {sorted(shapes)[:5]}") from e
    blocks = {stack: {int(m.group(2)) for k in shapes if (m := _BLOCK_RE.match(k)) and m.group(1) == stack}
              for stack in ("encoder", "decoder")}
    tied = "lm_head.weight" not in shapes
    return {
        "architectures": ["T5ForConditionalGeneration"], "model_type": "t5",
        "vocab_size": vocab_size, "d_model": d_model, "d_kv": inner // heads, "d_ff": d_ff, "num_heads": heads,
        "num_layers": len(blocks["encoder"]), "num_decoder_layers": len(blocks["decoder"]),
        "relative_attention_num_buckets": buckets, "relative_attention_max_distance": 128,
        # The activation leaves no trace in the tensors: gated means flan-t5 / T5 v1.1.
        "feed_forward_proj": "gated-gelu" if gated else "relu",
        # Original (tied) T5 scales the decoder output; flan-t5 (untied) does not.
        "tie_word_embeddings": tied, "scale_decoder_outputs": tied,
        "layer_norm_epsilon": 1e-6, "pad_token_id": 0, "eos_token_id": 1, "decoder_start_token_id": 0,
    }


@dataclasses.dataclass(frozen=True)
class _ShapeReader:
    """The tensor names and shapes of a state dict, as ``match_tensors`` reads them."""

    folder: Path  # named in errors: the .pt file
    shapes: Mapping[str, tuple[int, ...]]

    def keys(self) -> list[str]:
        return list(self.shapes)

    def shape(self, key: str) -> tuple[int, ...]:
        return self.shapes[key]


def _same_storage(a: Any, b: Any) -> bool:
    return a.untyped_storage().data_ptr() == b.untyped_storage().data_ptr()


def convert(checkpoint: str | Path, out: str | Path, base: str | None = None) -> Path:
    """Writes the .pt checkpoint's T5 as a Hugging Face folder ``out``; returns it.

    Everything is checked before anything is written: a state dict that does not form
    the T5 of the config raises one ``CheckpointError`` naming the file.
    """
    checkpoint, out = Path(checkpoint), Path(out)
    state = read_state_dict(checkpoint)
    shared = state.get("shared.weight")
    # A tied head is the embedding itself (same storage); a separate one is flan-t5's.
    state = {k: v for k, v in state.items() if k not in _EMBED_COPIES
             and not (k == "lm_head.weight" and shared is not None and _same_storage(v, shared))}
    shapes = {k: tuple(v.shape) for k, v in state.items()}
    if base is None:
        base_folder, hf_config, source = None, infer_hf_config(shapes, checkpoint), "inferred from the tensors"
    else:
        base_folder = hf_loading.resolve_folder(base)
        hf_config, source = hf_loading.read_config(base_folder), f"{base_folder / 'config.json'}"
        if out.resolve() == base_folder.resolve():
            raise hf_loading.CheckpointError(f"--out {out} is the --base folder; choose a new folder")
    try:
        config = t5.config_for_tensors(t5.T5Config.from_hf(hf_config), shapes)
        hf_loading.match_tensors(_ShapeReader(checkpoint, shapes), t5.weight_spec(config),
                                 registry.abstract_params(t5.FAMILY, config), ignore=t5.FAMILY.ignore)
    except hf_loading.CheckpointError as e:
        raise hf_loading.CheckpointError(f"{checkpoint}: not the T5 of the config {source}:\n{e}") from e

    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in state.items()}, str(out / "model.safetensors"), metadata={"format": "pt"})
    if base_folder is None:
        (out / "config.json").write_text(json.dumps(hf_config, indent=2) + "\n")
    else:
        for name in BASE_FILES:
            if (base_folder / name).exists():
                shutil.copyfile(base_folder / name, out / name)
    return out


def tokenizer_note(folder: Path) -> str | None:
    """What to do when a converted folder has no tokenizer (None when it has one)."""
    if any((folder / name).exists() for name in t5.TOKENIZER_FILES):
        return None
    hf_config = hf_loading.read_config(folder)
    size = _FLAN_T5.get((hf_config.get("d_model"), hf_config.get("num_layers")))
    name = size or "google/flan-t5-small"
    why = f"its shapes are {size}'s" if size else "the reference fine-tunes flan-t5-small"
    return (f"{folder} has no tokenizer ({' or '.join(t5.TOKENIZER_FILES)}); an oracle cannot run without one. "
            f"Rerun with --base {name} ({why}), or copy its tokenizer files in: huggingface-cli download {name} "
            f"spiece.model tokenizer.json tokenizer_config.json special_tokens_map.json --local-dir {folder}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", help="the reference's oracle .pt file")
    parser.add_argument("--out", required=True, help="Hugging Face folder to write")
    parser.add_argument("--base", help="flan-t5 folder or hub name lending config.json and the tokenizer")
    args = parser.parse_args(argv)
    try:
        out = convert(args.checkpoint, args.out, args.base)
    except (hf_loading.CheckpointError, ImportError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"wrote {out}")
    note = tokenizer_note(out)
    if note:
        print(f"warning: {note}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
