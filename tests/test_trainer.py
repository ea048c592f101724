"""The whole trainer, as a user runs it: the command, its outputs, resuming, errors."""

import functools
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import chex
import jax
import numpy as np
import optax
import pytest

import runs
from archer_jax import algorithms, checkpointing, config_checks, token_bridge, trainer
from archer_jax.algorithms import archer, bc
from archer_jax.data import simulated_episodes
from archer_jax.envs import lm_oracle
from archer_jax.models import registry
from experiments.configs import guess_city, twenty_questions

ROOT = Path(__file__).parent.parent
SMOKE = ["--config=guess_city.py:smoke"]


def _command(workdir: Path | str, *overrides: str) -> list[str]:
    return [sys.executable, "-m", "experiments.run", *SMOKE, f"--workdir={workdir}", *overrides]


def _run(workdir: Path | str, *overrides: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(_command(workdir, *overrides), cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def _rows(workdir: Path) -> list[dict]:
    return [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]


def _checkpoint_steps(workdir: Path) -> list[int]:
    folder = workdir / "checkpoints"
    return sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit()) if folder.exists() else []


def _archer_rows(workdir: Path) -> dict[int, dict]:
    rows = [r for r in _rows(workdir) if r["stage"] == "archer"]
    iterations = [r["iteration"] for r in rows]
    assert len(iterations) == len(set(iterations)), f"duplicated rows: {iterations}"
    return {r["iteration"]: r for r in rows}


def test_smoke_command_writes_every_output_and_a_rerun_resumes(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")  # W&B's real client, writing its run file here
    out = _run(tmp_path, "--config.logging.wandb_project=archer-test")
    assert out.returncode == 0, out.stderr[-3000:]
    rows = _rows(tmp_path)
    assert [r["stage"] for r in rows] == ["bc", "archer", "archer", "archer"]
    start, first = rows[1], rows[2]
    # Row 0 evaluates the policy ArCHer starts from; row k holds iteration k and (smoke:
    # every iteration) the evaluation after it.
    assert (start["iteration"], first["iteration"]) == (0, 1)
    assert not any(k.startswith(("rollout/", "critic/", "actor/")) for k in start)
    for key in ("env_steps", "rollout/return_mean", "eval/return_mean", "eval/success_rate", "critic/q1_loss",
                "critic/v1_loss", "time/compiles"):
        assert key in first, key
    assert "actor/pg_loss" in rows[3] and "actor/pg_loss" not in first  # after warm-up (1 iteration)
    # Each phase's wall time, the phases within the iteration's.
    assert {k for k in start if k.startswith("time/") and k.endswith("_s")} == {"time/eval_s", "time/iteration_s"}
    assert {k for k in first if k.startswith("time/") and k.endswith("_s")} == {
        "time/eval_s", "time/rollout_s", "time/rollout_generate_s", "time/critic_s", "time/iteration_s"}
    assert "time/actor_s" in rows[3]
    # Of the rollout's time, the part spent waiting for generate (the rest is the host's).
    assert all(0 < r["time/rollout_generate_s"] < r["time/rollout_s"] for r in rows[2:])
    for r in rows[1:]:
        phases = sum(v for k, v in r.items() if k.startswith("time/")
                     and k not in ("time/iteration_s", "time/compiles", "time/rollout_generate_s"))
        assert 0 < phases <= r["time/iteration_s"]
    assert "probe/q_mc_corr" in first and "probe/adv_mc_corr" in first  # values: test_probe_metrics_by_hand
    evaluation = json.loads((tmp_path / "evaluations" / "archer_00000.json").read_text())
    assert len(evaluation["returns"]) == len(evaluation["seeds"]) == 8  # smoke eval_size
    assert sum(evaluation["returns"]) / 8 == pytest.approx(start["eval/return_mean"], abs=1e-5)
    # ArCHer starts from the BC actor: its start evaluation repeats BC's last one exactly,
    # and is logged again rather than replayed (evaluation is deterministic).
    assert start["eval/return_mean"] == rows[0]["eval/return_mean"]
    assert "archer iteration 0: the policy is unchanged since the previous evaluation" in out.stdout + out.stderr
    assert json.loads((tmp_path / "evaluations" / "bc_00001.json").read_text())["returns"] == evaluation["returns"]
    assert "archer iteration 1: the policy is unchanged" in out.stdout + out.stderr  # warm-up: critic only
    assert "archer iteration 2: the policy is unchanged" not in out.stdout + out.stderr
    # Every turn costs 1 but the winning one, within the 4-turn cap.
    assert start["eval/return_mean"] == pytest.approx(start["eval/success_rate"] - start["eval/turns_mean"])
    assert 1.0 <= start["eval/turns_mean"] <= 4.0
    # The first iteration compiles (its rollouts' insert, the critic probe); none after it.
    assert all(r["time/compiles"] == 0 for r in rows[3:]), [r["time/compiles"] for r in rows]
    assert sorted(p.name for p in (tmp_path / "transcripts").iterdir())[:1] == ["archer_000000.txt"]
    assert "Questions:" in (tmp_path / "transcripts" / "archer_000000.txt").read_text()
    assert list((tmp_path / "tensorboard").rglob("events.out.tfevents.*"))
    assert _checkpoint_steps(tmp_path)[-1] == trainer.STAGE_STRIDE + 2  # after ArCHer's 2 iterations
    # Weights & Biases got every row's scalars, against each stage's iteration.
    run_id = (tmp_path / "wandb_id").read_text().strip()
    (run_file,) = (tmp_path / "wandb").glob(f"offline-run-*-{run_id}/run-{run_id}.wandb")
    assert runs.wandb_history(run_file) == [
        {f"{r['stage']}/iteration": r["iteration"],
         **{f"{r['stage']}/{k}": v for k, v in r.items() if k not in ("stage", "iteration", "time")}} for r in rows]

    again = _run(tmp_path)  # every stage finished: nothing to do, nothing duplicated
    assert again.returncode == 0, again.stderr[-3000:]
    assert "every stage of this run is finished" in again.stderr and "pass a new --workdir" in again.stderr
    assert _rows(tmp_path) == rows


def test_paper_variant_on_fixture_weights_with_an_id_table_bridge(tmp_path, hf_fixtures):
    """The paper's code path at smoke sizes: a pretrained GPT-2 actor and a pretrained RoBERTa
    critic whose tokenizer numbers the same BPE differently (the id-table bridge with <s>),
    the critic reading observation and utterance apart with its pooler, BC then ArCHer. (Twenty
    Questions: its turns fit the fixture's 32 positions, Guess My City's answers do not.)"""
    config = twenty_questions.get_config("paper")
    critic_folder = hf_fixtures / "roberta_renumbered"
    config.actor.checkpoint, config.critic.checkpoint = str(hf_fixtures / "gpt2"), str(critic_folder)
    config.tokens.obs_len, config.tokens.action_len = 22, 8  # the fixture GPT-2 has 32 positions
    smoke = twenty_questions.get_config("smoke")  # sizes only
    config.env.max_turns, config.data.num_episodes = smoke.env.max_turns, smoke.data.num_episodes
    config.bc.update({k: smoke.bc[k] for k in ("iterations", "steps", "batch_size")})
    config.archer.update({k: smoke.archer[k] for k in (
        "iterations", "rollout_size", "rollout_batch", "capacity", "critic_epochs", "actor_epochs", "batch_size",
        "actor_batch_size", "warmup_iter", "eval_every", "eval_size")})
    run = trainer.train(config, tmp_path)
    critic_tokenizer = registry.load_tokenizer(str(critic_folder))
    assert (run.bridge.kind, run.bridge.bos_id) == ("table", critic_tokenizer.bos_token_id)
    # (The plain roberta fixture carries the actor's own tokenizer: that pair needs no bridge.)
    assert token_bridge.choose_kind(run.tokenizer, registry.load_tokenizer(str(hf_fixtures / "roberta"))) == "identity"
    assert (config.critic.pooling, config.critic.joint, config.actor.lr) == ("pooled", False, 1e-6)  # the paper, TQ
    rows = _rows(tmp_path)
    assert [(r["stage"], r["iteration"]) for r in rows] == [("bc", 1), ("archer", 0), ("archer", 1), ("archer", 2)]
    assert "critic/q1_loss" in rows[2] and any(k.startswith("actor/") for k in rows[3])
    # The trained critic scores what the actor wrote: V through the run's bridge equals V of
    # the same tokens looked up by string in the critic's vocabulary, after its <s>.
    n, length = 8, config.tokens.obs_len + 1
    buffer = jax.device_get(run.buffer)
    assert int(buffer.size) > n
    ids, mask = np.full((n, length), critic_tokenizer.pad_token_id), np.zeros((n, length), bool)
    for i in range(n):
        tokens = run.tokenizer.convert_ids_to_tokens(buffer.obs[i][buffer.obs_mask[i]].tolist())
        row = [critic_tokenizer.bos_token_id, *critic_tokenizer.convert_tokens_to_ids(tokens)]
        ids[i, length - len(row):], mask[i, length - len(row):] = row, True
    v1, v2 = run.critic.apply({"params": run.state.critic_params}, ids, mask, method="values")
    first = jax.tree.map(lambda x: x[:n], buffer.rows)
    _, v = archer.critic_scores(run.state, first, critic=run.critic, bridge=run.bridge)
    np.testing.assert_allclose(np.asarray(v), np.minimum(np.asarray(v1), np.asarray(v2)), atol=1e-5, rtol=0)


def test_lm_oracle_answers_the_online_games(tmp_path, hf_fixtures):
    oracle = tmp_path / "oracle"
    shutil.copytree(hf_fixtures / "t5", oracle)
    shutil.copytree(hf_fixtures / "t5_tokenizer", oracle, dirs_exist_ok=True)
    config = guess_city.get_config("smoke")
    config.env.oracle, config.env.oracle_checkpoint = "lm", str(oracle)
    # Evaluations on even iterations only, the actor phase from iteration 2: no iteration
    # after the first compiles anything, the oracle's bucketed decodes included.
    config.bc.iterations, config.archer.iterations, config.archer.eval_every = 0, 5, 2
    run = trainer.train(config, tmp_path / "run")
    assert isinstance(run.runner.env.task.oracle, lm_oracle.LMOracle)
    assert run.task.oracle_format is not None
    rows = [row for _, row in sorted(_archer_rows(tmp_path / "run").items())]
    assert [r["iteration"] for r in rows] == list(range(6))
    assert ["eval/return_mean" in r for r in rows] == [True, False, True, False, True, True]
    assert [any(k.startswith("actor/") for k in r) for r in rows] == [False, False] + [True] * 4
    compiles = [r["time/compiles"] for r in rows]  # row 0: greedy decoding; row 1: the first iteration
    assert compiles[0] > 0 and compiles[1] > 0 and compiles[2:] == [0] * 4, compiles


def test_archer_starts_the_critic_the_baseline_and_the_kl_anchor_from_the_bc_actor(tmp_path):
    """ArCHer with a token-level baseline (one run for both variants: plain ArCHer's start
    is this one without the baseline): the critic's encoder, the baseline, the target
    critic and the KL anchor all start as the BC actor, and each trains after warm-up."""
    config = guess_city.get_config("smoke")
    config.algorithm = "archer_baseline"
    config.critic.kind, config.archer.actor_samples = "actor", 2
    config.archer.kl_coef, config.archer.forward_kl_coef = 0.0, 0.1
    assert algorithms.ALGORITHMS["archer"].reference(config)  # either anchor keeps the BC actor
    config.archer.kl_coef = 0.1
    config.archer.actor_batch_size = 2 * config.archer.batch_size  # the two batches are set apart
    run = trainer.setup(config, tmp_path)
    assert (run.hp.critic_batch_size, run.hp.actor_batch_size) == (8, 16)
    bc_actor = jax.device_get(run.state.actor_params)
    start = jax.jit(functools.partial(archer.start_state, actor_tx=optax.adam(1e-3), critic_tx=optax.adam(1e-3),
                                      critic_from_actor=True, baseline_tx=optax.adam(1e-3)))
    state = jax.device_get(start(run.state))
    chex.assert_trees_all_equal(state.critic_params["encoder"]["lm"], bc_actor)
    chex.assert_trees_all_equal(state.target_critic_params, state.critic_params)
    chex.assert_trees_all_equal(state.ref_actor_params, bc_actor)
    chex.assert_trees_all_equal(state.baseline_params["lm"], bc_actor)
    run.checkpointer.close()
    config.bc.iterations, config.archer.iterations, config.archer.warmup_iter = 1, 2, 1
    # A large actor step, so the final policy speaks differently from the BC one; every
    # evaluation dialogue goes to the transcripts.
    config.actor.lr, config.transcripts = 0.05, config.archer.eval_size
    # Two actor steps: the first one's KL sample is exactly 0 (pi is still pi_ref), the
    # second's is not (one step at that rate apart).
    config.archer.actor_epochs = 2
    trainer.train(config, tmp_path / "run")
    rows = _archer_rows(tmp_path / "run")
    assert sorted(rows) == [0, 1, 2]

    def dialogues(name):  # a transcript without its header line (stage, iteration)
        return (tmp_path / "run" / "transcripts" / f"{name}.txt").read_text().split("\n", 1)[1]

    # ArCHer's row 0 evaluates the BC policy itself: the same greedy games as BC's last
    # evaluation, word for word, while the updated policy's games differ.
    assert dialogues("archer_000000") == dialogues("bc_000001")
    assert dialogues("archer_000002") != dialogues("archer_000000")
    # The KL sample is log pi - log pi_ref of a batch (any sign); 2 samples per state
    # (their leave-one-out advantages without a baseline: test_archer_steps.py).
    assert rows[2]["actor/kl"] != 0.0 and rows[2]["actor/forward_kl"] != 0.0
    assert rows[2]["actor/q_within_std"] > 0.0
    assert "baseline/loss" in rows[2] and "baseline/loss" not in rows[1]  # after the critic-only warm-up
    assert "actor/pg_loss" in rows[2]


def test_offline_turns_then_greedy_and_sampled_rollouts_fill_the_buffer(tmp_path):
    """With config.archer.offline_data the buffer starts with every turn of the BC data
    (here with no BC stage), then the rollouts follow; greedy and sampled rollouts are
    reported apart."""
    config = guess_city.get_config("smoke")
    config.archer.greedy_rollouts, config.bc.iterations, config.archer.iterations = 0.5, 0, 1
    config.archer.offline_data, config.archer.capacity = True, 1024  # room for all (the smoke's 256 would wrap)
    run = trainer.train(config, tmp_path)
    row = _archer_rows(tmp_path)[1]
    offline = jax.device_get(bc.dataset_buffer(run))
    buffer = jax.device_get(run.buffer)
    assert offline.size > config.data.num_episodes  # every turn, not one per episode
    assert buffer.size == offline.size + row["rollout/turns"]
    for name in ("obs", "action", "next_obs", "reward", "done", "mc_return"):
        np.testing.assert_array_equal(getattr(buffer, name)[:offline.size], getattr(offline, name)[:offline.size])
    both = (row["rollout/greedy_return_mean"] + row["rollout/sampled_return_mean"]) / 2
    assert abs(row["rollout/return_mean"] - both) < 1e-5  # half of the batch each
    both = (row["rollout/greedy_success_rate"] + row["rollout/sampled_success_rate"]) / 2
    assert abs(row["rollout/success_rate"] - both) < 1e-5


def test_probe_metrics_by_hand():
    q, mc_return = np.array([1.0, 2.0, 3.0, 4.0]), np.array([-1.0, -2.0, -2.0, -4.0])
    v = np.array([0.0, 1.0, 1.0, 3.0])
    got = archer.probe_metrics(q, v, mc_return)
    # corr(q, G): centred q [-1.5, -0.5, 0.5, 1.5], G [1.25, 0.25, 0.25, -1.75]: -4.5 / sqrt(5 * 4.75).
    assert got["probe/q_mc_corr"] == pytest.approx(-4.5 / np.sqrt(5 * 4.75))
    # Q - V [1, 1, 2, 1] against G - V [-1, -3, -3, -7]: centred [-0.25, -0.25, 0.75, -0.25] and
    # [2.5, 0.5, 0.5, -3.5]: dot 0.5 over sqrt(0.75 * 19).
    assert got["probe/adv_mc_corr"] == pytest.approx(0.5 / np.sqrt(0.75 * 19))
    assert got["probe/q_mc_bias"] == pytest.approx(4.75)  # Q - G: 2, 4, 5, 8
    assert archer.probe_metrics(q[:2], v[:2], mc_return[:2]) == {}  # too few turns to correlate


@pytest.mark.parametrize("field,value,message", [
    ("actor.checkpoint", "/no/such/folder", "config.actor.checkpoint = '/no/such/folder' cannot be loaded"),
    ("env.oracle", "lm", "config.env.oracle = 'lm' needs config.env.oracle_checkpoint"),
    ("env.oracle", "human", "config.env.oracle = 'human'"),
    ("critic.kind", "bert", "config.critic.kind = 'bert': choose one of ('roberta', 'actor')"),
    ("archer.gamma", 1.5, "config.archer.gamma = 1.5: must lie in [0, 1]"),
    ("archer.mc_mix", -0.1, "config.archer.mc_mix = -0.1: must lie in [0, 1]"),
    ("archer.greedy_rollouts", -0.5, "config.archer.greedy_rollouts = -0.5: a fraction in [0, 1]"),
    ("archer.reward_scale", 0.0, "config.archer.reward_scale = 0.0: must be a positive number"),
    ("archer.rollout_size", 10, "config.archer.rollout_size = 10 must be a multiple of config.archer.rollout_batch"),
    ("actor.kind", "bert", "config.actor.kind = 'bert'"),
    ("algorithm", "ppo2", "config.algorithm = 'ppo2': choose one of ('archer', 'archer_baseline', 'ppo', 'filtered_bc', "),
    ("filtered_bc.top_fraction", 0.0, "config.filtered_bc.top_fraction = 0.0: a fraction in (0, 1]"),
    ("data.mix", "nobody=1", "config.data.mix = 'nobody=1': 'nobody=1' is not 'player=weight'"),
    ("ppo.gae_lambda", 1.5, "config.ppo.gae_lambda = 1.5: must lie in [0, 1]"),
    ("ppo.epochs", 0, "config.ppo.epochs = 0: must be a positive number"),
    ("chai.candidates", 0, "config.chai.candidates = 0: must be a positive number"),
    ("offline.expectile", 1.0, "config.offline.expectile = 1.0: must lie in (0, 1)"),
    ("env.num_items", 500, "config.env.num_items = 500: must lie in [1, 100] for task 'guess_city'"),
    ("tokens.obs_len", 2, "config.tokens.obs_len = 2 cannot hold one turn (the shortest whole observation of "
                          "task 'guess_city' takes 17 tokens)"),
    ("tokens.length_buckets", (64, 0), "config.tokens.length_buckets = (64, 0): a tuple of token widths > 0"),
    ("tokens.actor_template", "Ask.", "config.tokens.actor_template = 'Ask.': a text with one '{obs}' where"),
    ("mesh.shape", (3, 1, 1), "config.mesh.shape = (3, 1, 1): mesh_shape [3, 1, 1] needs 3 devices but 8 are"),
])
def test_bad_config_fields_are_named(tmp_path, field, value, message):
    config = guess_city.get_config("smoke")
    *section, name = field.split(".")
    # A field of one algorithm's block is checked by that algorithm (its check_config).
    readers = [n for n, a in algorithms.ALGORITHMS.items() if section and section[0] in a.config_blocks]
    config.algorithm = readers[0] if readers else config.algorithm
    (config[section[0]] if section else config)[name] = value
    with pytest.raises(config_checks.ConfigError) as err:
        trainer.setup(config, tmp_path)
    assert message in str(err.value)


XLA_CACHE_SCRIPT = """
import sys, jax, jax.numpy as jnp
from archer_jax import trainer
hits = []
jax.monitoring.register_event_listener(lambda event, **_: hits.append(event == "/jax/compilation_cache/cache_hits"))
trainer.use_xla_cache(sys.argv[1])
print(float(jax.jit(lambda x: jnp.sin(x) @ x)(jnp.ones((8, 8)))[0, 0]), sum(hits))
"""


def test_the_xla_cache_folder_keeps_compiled_programs_for_the_next_process(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "JAX_COMPILATION_CACHE_DIR"}
    env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"  # keep even this tiny program

    def run(folder: str) -> list[str]:
        out = subprocess.run([sys.executable, "-c", XLA_CACHE_SCRIPT, folder], env=env, capture_output=True,
                             text=True, check=True, cwd=Path(__file__).parents[1])
        return out.stdout.split()

    first = run(str(tmp_path / "xla"))
    assert first[1] == "0" and any((tmp_path / "xla").iterdir())
    second = run(str(tmp_path / "xla"))
    assert second[0] == first[0] and int(second[1]) >= 1  # the same result, from cached programs
    assert run("")[1] == "0"  # '' = off


def test_an_xla_cache_folder_that_is_a_file_is_refused(tmp_path):
    config = guess_city.get_config("smoke")
    config.xla_cache_dir = str(tmp_path / "cache")
    (tmp_path / "cache").write_text("")
    with pytest.raises(config_checks.ConfigError, match="config.xla_cache_dir = .* is a file: give a folder"):
        trainer.setup(config, tmp_path / "run")


def test_a_workdir_that_is_a_file_is_refused(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("mine")
    with pytest.raises(config_checks.ConfigError, match="is an existing file; pass a folder"):
        trainer.setup(guess_city.get_config("smoke"), path)
    out = _run(path)
    assert out.returncode == 2 and out.stderr.startswith("error: --workdir=") and "Traceback" not in out.stderr
    assert path.read_text() == "mine"


def test_prompt_longer_than_the_actor_context_is_refused(tmp_path, hf_fixtures):
    config = guess_city.get_config("smoke")
    config.actor.checkpoint = str(hf_fixtures / "gpt2")
    config.critic.checkpoint = str(hf_fixtures / "roberta")
    with pytest.raises(config_checks.ConfigError, match="exceeds the actor's context of 32 positions"):
        trainer.setup(config, tmp_path)
    config.tokens.actor_template = "Play.\n{obs}"  # counted too
    with pytest.raises(config_checks.ConfigError, match=r"action_len \+ the \d+ tokens of config\.tokens\.actor_"):
        trainer.setup(config, tmp_path)


def test_the_actor_template_reaches_the_actor_and_not_the_buffer_or_the_critic(tmp_path):
    """A smoke run with config.tokens.actor_template: the word tokenizer has its words,
    the phases' prompt holds its ids, and the buffer (what the critic reads) holds bare
    observations, none of the template's own words."""
    config = guess_city.get_config("smoke")
    config.tokens.actor_template = "Zebra quantum:\n{obs}\nxylophone"
    config.bc.iterations, config.archer.iterations, config.archer.warmup_iter = 1, 1, 0
    run = trainer.train(config, tmp_path)
    tok = run.tokenizer
    assert run.hp.prompt.prefix == tuple(tok("Zebra quantum:\n", add_special_tokens=False)["input_ids"])
    assert run.hp.prompt.suffix == tuple(tok("\nxylophone", add_special_tokens=False)["input_ids"])
    own = {tok.convert_tokens_to_ids(w) for w in ("Zebra", "quantum", "xylophone")}
    assert tok.unk_token_id not in own
    buffer = jax.device_get(run.buffer)
    assert buffer.size > 0 and not np.isin(buffer.obs[:buffer.size], list(own)).any()
    assert "actor/pg_loss" in _archer_rows(tmp_path)[1]
    run.checkpointer.close()


def test_paper_variant_without_weights_names_the_field_and_the_demo(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(config_checks.ConfigError) as err:
        trainer.setup(guess_city.get_config("paper"), tmp_path)
    assert "config.actor.checkpoint = 'gpt2'" in str(err.value) and ":demo" in str(err.value)


def test_command_line_errors_are_one_message(tmp_path):
    out = _run(tmp_path, "--config.archer.nope=1", timeout=120)
    assert out.returncode == 2
    assert "unknown config field 'config.archer.nope'" in out.stderr and "Traceback" not in out.stderr
    # A field another algorithm reads would be ignored: refused, naming who reads it.
    out = _run(tmp_path, "--config.ppo.epochs=2", timeout=120)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "config.ppo is read by 'ppo' only, and config.algorithm is 'archer'" in out.stderr
    assert "--config.algorithm=ppo" in out.stderr
    out = _run(tmp_path, "--config.filtered_bc.top_fraction=0.2", "--config.algorithm=offline_archer", timeout=120)
    assert out.returncode == 2 and "read by 'filtered_bc' and 'offline_filtered_bc' only" in out.stderr
    assert not (tmp_path / "metrics.jsonl").exists()
    out = _run(tmp_path, "--config.actor.checkpoint=/no/such/folder", timeout=300)
    assert out.returncode == 2
    assert out.stderr.strip().startswith("error: config.actor.checkpoint") and "Traceback" not in out.stderr


def test_corrupt_dataset_names_the_file(tmp_path):
    config = guess_city.get_config("smoke")
    data_dir = tmp_path / "data"
    episodes = simulated_episodes.episodes_config(config.task, config.data.num_episodes, config.data.seed,
                                                  max_turns=config.env.max_turns)
    simulated_episodes.load_episodes(data_dir, episodes)
    (path,) = data_dir.rglob("*.array_record-*")
    path.write_bytes(b"\x00" * 64)
    config.data.dir = str(data_dir)
    with pytest.raises(simulated_episodes.EpisodeDataError) as err:
        trainer.train(config, tmp_path / "run")
    assert str(path) in str(err.value)


def test_changed_shapes_refuse_the_old_checkpoint(tmp_path):
    config = guess_city.get_config("smoke")
    config.bc.iterations, config.archer.iterations = 0, 1
    trainer.train(config, tmp_path)
    config.archer.capacity = 512
    with pytest.raises(checkpointing.CheckpointMismatchError, match="config.archer.capacity"):
        trainer.setup(config, tmp_path)
    assert os.path.isdir(tmp_path / "checkpoints")  # nothing was deleted
