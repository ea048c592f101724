"""experiments.memory_plan: its per-device bytes are those of the state and buffer a run
really allocates, and the command plans a LoRA actor on a sharded mesh at smoke size."""

import json
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np

from archer_jax import trainer
from experiments import memory_plan
from experiments.configs import guess_city, twenty_questions_subset

REPO = Path(__file__).resolve().parents[1]


def _device0_bytes(tree) -> int:
    device = jax.devices()[0]
    return sum(s.data.nbytes for leaf in jax.tree.leaves(tree) for s in leaf.addressable_shards if s.device == device)


def test_the_plan_counts_what_a_run_allocates_on_a_device(tmp_path):
    config = guess_city.get_config("smoke")
    config.mesh.shape = (2, 4, 1)  # data x FSDP: some leaves sharded, some replicated
    config.archer.kl_coef = 0.1  # the KL anchor's copy of the actor too
    config.tokens.actor_template = "Find the city.\n{obs}\nYour question:"
    planned = memory_plan.plan(config, compile_programs=False)
    run = trainer.setup(config, tmp_path)
    try:
        assert planned["devices"] == 8 and planned["mesh"] == {"data": 2, "fsdp": 4, "tensor": 1}
        resident = planned["resident"]
        for field in ("actor_params", "actor_opt_state", "ref_actor_params", "critic_params", "critic_opt_state",
                      "target_critic_params"):
            assert resident[field] == _device0_bytes(getattr(run.state, field)), field
        assert resident["replay_buffer"] == _device0_bytes(run.buffer)
        whole = sum(x.nbytes for x in jax.tree.leaves(run.state.actor_params))
        assert resident["actor_params"] < whole  # FSDP splits the actor
        assert planned["template_exact"] and planned["template_tokens"] == len(run.hp.prompt) == 9  # words, marks
    finally:
        run.checkpointer.close()


def test_the_command_plans_a_lora_actor_and_its_programs():
    """The CLI at smoke size: a Llama actor with LoRA and remat under FSDP, the three
    programs compiled; the last line is the JSON."""
    out = subprocess.run(
        [sys.executable, "-m", "experiments.memory_plan", "--config=guess_city.py:smoke", "--devices=4",
         "--device_gib=1", "--config.actor.kind=llama", "--config.actor.lora_rank=2", "--config.actor.remat=True",
         "--config.actor.param_dtype=bfloat16", "--config.mesh.shape=(1,-1,1)"],
        cwd=REPO, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["devices"] == 4 and result["mesh"]["fsdp"] == 4
    assert 0 < result["actor_trainable"] < result["actor_params"] / 10  # only the adapters train
    assert set(result["programs"]) == {"generate", "critic_phase", "actor_phase"}
    for p in result["programs"].values():
        assert p["temp"] > 0 and p["peak"] >= p["arguments"] + p["temp"]
    assert "state and buffer (exact): " in out.stdout and "per device: fits" in out.stdout  # 1 GiB holds a smoke run


def test_the_mistral_recipe_is_planned_offline():
    """The reference's Mistral-7B recipe: its architecture without its weights, the
    state's bytes on 8 chips (no compile: that is the README's command)."""
    config = twenty_questions_subset.get_config("mistral")
    planned = memory_plan.plan(config, compile_programs=False)
    assert 7.2e9 < planned["actor_params"] < 7.3e9
    # rank 16 on q, k, v, o of 32 layers: A [in, 16] and B [16, out] each
    q = o = 4096 + 4096
    k = v = 4096 + 8 * 128  # 8 key-value heads
    assert planned["actor_trainable"] == 32 * 16 * (q + k + v + o) == 13_631_488
    # bfloat16 base over 8 FSDP shards, float32 adapters
    assert np.isclose(planned["resident"]["actor_params"], 7.24e9 * 2 / 8, rtol=0.03)
    # Its instruct template, without the tokenizer at hand: one token per character at most.
    template = twenty_questions_subset.MISTRAL_TEMPLATE
    assert not planned["template_exact"] and planned["template_tokens"] == len(template) - len("{obs}")


def test_a_checkpoint_without_a_config_is_one_error():
    out = subprocess.run(
        [sys.executable, "-m", "experiments.memory_plan", "--config=guess_city.py:smoke", "--devices=1",
         "--config.actor.checkpoint=/no/such/model"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines()[-1].startswith("error: config.actor.checkpoint = '/no/such/model': no "
                                                          "config.json at hand")
    assert "Traceback" not in out.stderr
