"""Writes a run's latest actor as a Hugging Face folder.

    python -m experiments.export --workdir=/tmp/gc_demo --out=/tmp/gc_actor [--overwrite] [--config=...]

The folder holds config.json, model.safetensors, the actor's tokenizer (a
checkpoint's own, or the demo's word tokenizer as a ``tokenizers`` WordLevel JSON that
``PreTrainedTokenizerFast`` reads), generation_config.json (greedy, as the run
evaluates; stops at the utterance terminator's ids; at most config.tokens.action_len
new tokens) and archer_export.json (where it came from, and how the run prompted
it). ``transformers.AutoModelForCausalLM.from_pretrained(FOLDER)`` and
``AutoTokenizer.from_pretrained(FOLDER)`` load it, and so does
``archer_jax.models.registry.load_pretrained`` (so the folder can start another run as
``config.actor.checkpoint``). The weights are the loading spec of the actor's family
inverted (``hf_loading.export_params``): GPT-2 and Llama/Mistral actors.

The run is opened read-only (``experiments.run_folder``), so a run may be exported
while it trains (its latest complete checkpoint). An existing non-empty --out is
refused unless --overwrite.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from absl import app, flags, logging

from experiments import run_folder
from experiments.run_folder import fail

_OUT = flags.DEFINE_string("out", None, "the Hugging Face folder to write")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "replace an existing non-empty --out")

EXPORT_INFO_FILE = "archer_export.json"


def check_out(out: str, workdir: str, overwrite: bool) -> Path:
    """--out as a Path, or ToolError: an existing file, a non-empty folder without
    --overwrite, or a folder that holds the run itself."""
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise run_folder.ToolError(f"--out={out}: is an existing file; pass a folder")
    run = Path(workdir).resolve()
    if path.resolve() == run or path.resolve() in run.parents:
        raise run_folder.ToolError(f"--out={out}: holds the run folder {workdir}; choose another folder")
    if path.is_dir() and any(path.iterdir()) and not overwrite:
        raise run_folder.ToolError(f"--out={out}: exists and is not empty; choose a new folder or pass --overwrite "
                                   "to replace it")
    return path


def export(run: Any, out: Path) -> dict[str, Any]:
    """Writes ``run``'s actor, tokenizer and generation settings to ``out`` (built in a
    temporary folder beside it, then moved into place); returns archer_export.json's
    contents."""
    from archer_jax.models import registry

    c, tokenizer = run.config, run.tokenizer
    special = {"bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id,
               "pad_token_id": run.hp.pad_id}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        hf_config = registry.save_pretrained(run.actor, run.state.actor_params, tmp, extra_config=special)
        tokenizer.save_pretrained(str(tmp))
        _portable_tokenizer_class(tmp / "tokenizer_config.json")
        generation = {**special, "eos_token_id": list(run.hp.stop_ids), "do_sample": False,
                      "max_new_tokens": c.tokens.action_len}
        (tmp / "generation_config.json").write_text(json.dumps(generation, indent=2) + "\n")
        info = {
            "workdir": str(run.workdir), "checkpoint_step": run.checkpointer.latest_step(),
            "stage": run.progress.get("stage"), "iteration": run.progress.get("iteration"),
            "task": c.task, "algorithm": c.algorithm, "model_type": hf_config["model_type"],
            # How the run prompted the actor: the observation text, tokenized without
            # special tokens, left-truncated to obs_len tokens, between the ids of
            # actor_template's two sides (each tokenized alone; '' = none); an utterance
            # ends at the terminator (generation_config's eos ids) or after action_len tokens.
            "obs_len": c.tokens.obs_len, "action_len": c.tokens.action_len, "terminator": c.tokens.terminator,
            "add_special_tokens": False, "actor_template": c.tokens.actor_template,
        }
        (tmp / EXPORT_INFO_FILE).write_text(json.dumps(info, indent=2) + "\n")
        umask = os.umask(0)
        os.umask(umask)
        for path in (tmp, *tmp.iterdir()):  # mkdtemp's folder (and safetensors' file) are private
            path.chmod((0o777 if path.is_dir() else 0o666) & ~umask)
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return info


def _portable_tokenizer_class(path: Path) -> None:
    """transformers 5 saves a plain ``tokenizers`` tokenizer (the demo's word tokenizer)
    as class 'TokenizersBackend', which transformers 4 does not know; both read
    'PreTrainedTokenizerFast' (the class it was built as)."""
    if not path.is_file():
        return
    config = json.loads(path.read_text())
    if config.get("tokenizer_class") == "TokenizersBackend":
        config["tokenizer_class"] = "PreTrainedTokenizerFast"
        path.write_text(json.dumps(config, indent=2) + "\n")


def main(argv: list[str]) -> None:
    del argv
    if not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)
    from archer_jax.models import hf_loading
    from experiments import run as run_cli

    try:
        run_folder.check_workdir(run_cli._WORKDIR.value)
        out = check_out(_OUT.value, run_cli._WORKDIR.value, _OVERWRITE.value)
    except run_folder.ToolError as e:
        fail(str(e))
    run = run_folder.open_run()
    try:
        info = export(run, out)
    except hf_loading.CheckpointError as e:
        fail(str(e))
    finally:
        run.checkpointer.close()
    print(f"exported the actor of {info['workdir']} (checkpoint {info['checkpoint_step']}: {info['stage']} iteration "
          f"{info['iteration']}) as a Hugging Face {info['model_type']} folder: {out}")


if __name__ == "__main__":
    sys.argv = run_folder.prepare_argv(sys.argv, {"out": "the Hugging Face folder to write"})
    app.run(main)
