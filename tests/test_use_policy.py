"""Using a trained policy: experiments.export, experiments.evaluate and experiments.play
on one smoke run, and the export of the Hugging Face fixtures (load -> export -> load).

The torch parts (transformers loads the export and generates) skip without torch: the
product never needs it.
"""

import json
import re
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from archer_jax import metrics, provenance, sampling, trainer
from archer_jax.data import tokenization
from archer_jax.envs import question_game
from archer_jax.models import hf_loading, layers, registry
from experiments.configs import guess_city

REPO = Path(__file__).resolve().parents[1]
BC_STEPS = 100  # the smoke run's 2 BC steps leave an agent that only says "\n"; 100 make it ask (badly)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One smoke run (BC, then 2 ArCHer iterations), recorded in run_info.jsonl as the
    experiments.run command that would make it: (workdir, the in-memory run)."""
    workdir = tmp_path_factory.mktemp("use_policy") / "run"
    config = guess_city.get_config("smoke")
    config.bc.steps = BC_STEPS
    run = trainer.train(config, workdir)
    provenance.record_run(workdir, config, ["experiments/run.py", "--config=experiments/configs/guess_city.py:smoke",
                                            f"--config.bc.steps={BC_STEPS}", f"--workdir={workdir}"])
    return workdir, run


def _tool(name: str, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", f"experiments.{name}", *args], cwd=REPO, input=stdin,
                          capture_output=True, text=True, timeout=600)


def _one_error(out: subprocess.CompletedProcess, *needles: str) -> str:
    """The one ``error:`` message of a refused command (exit code 2, no traceback)."""
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr
    errors = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, out.stderr
    message = out.stderr[out.stderr.index("error:"):]  # the line, and the lines a long message continues on
    for needle in needles:
        assert needle in message, message
    return message


def _files(folder: Path, skip: str) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in folder.rglob("*") if p.is_file() and p.relative_to(folder).parts[0] != skip}


def _dialogues(transcript: str) -> list[str]:
    """The dialogues of a transcript file (metrics.MetricsLogger's or evaluate's)."""
    rule = "=" * 72
    parts = transcript.split(rule + "\n")
    return [parts[i].strip() for i in range(2, len(parts), 2)]


# ----------------------------------------------------------------------------- export


@pytest.fixture(scope="module")
def exported(trained, tmp_path_factory):
    """The run exported over a non-empty folder (--overwrite)."""
    workdir, _ = trained
    out = tmp_path_factory.mktemp("export") / "actor"
    out.mkdir()
    (out / "old.txt").write_text("replaced by the export")
    result = _tool("export", f"--workdir={workdir}", f"--out={out}", "--overwrite")
    assert result.returncode == 0, result.stderr
    assert "as a Hugging Face gpt2 folder" in result.stdout
    return out


def test_export_writes_a_hugging_face_folder(trained, exported):
    workdir, run = trained
    assert not (exported / "old.txt").exists()
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
            "generation_config.json", "archer_export.json"} <= {p.name for p in exported.iterdir()}
    generation = json.loads((exported / "generation_config.json").read_text())
    assert generation["eos_token_id"] == list(run.hp.stop_ids) and generation["do_sample"] is False
    info = json.loads((exported / "archer_export.json").read_text())
    assert info["stage"] == "archer" and info["iteration"] == 2 and info["obs_len"] == run.config.tokens.obs_len
    # Our own loader reads it back into the very params the run ended with.
    loaded = registry.load_pretrained(str(exported))
    assert loaded.config == run.actor.config
    for a, b in zip(jax.tree.leaves(loaded.params), jax.tree.leaves(run.state.actor_params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(jax.device_get(b)))


def test_export_loads_in_transformers_with_identical_greedy_generations(trained, exported):
    pytest.importorskip("torch", reason="torch is needed only to check the export in transformers")
    import torch
    import transformers

    workdir, run = trained
    model = transformers.AutoModelForCausalLM.from_pretrained(str(exported)).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(exported))
    task = run.runner.env.task
    prompts = [question_game.OBSERVATION_HEADER,
               question_game.format_observation([("Is the city in Europe?",
                                                  task.oracle.answer(["Budapest"], ["Is the city in Europe?"])[0])]),
               _dialogues((workdir / metrics.TRANSCRIPTS_DIR / "archer_000002.txt").read_text())[0]
               .split("\n", 1)[1][:-40]]
    c = run.config
    ids, mask = tokenization.encode_left(run.tokenizer, prompts, c.tokens.obs_len, pad_id=run.hp.pad_id)
    greedy = jax.device_get(run.runner.policy(run.state.actor_params, ids, mask, jax.random.key(0),
                                              np.zeros(len(prompts), np.float32)))
    # The same greedy decoding without the terminator: every one of action_len tokens.
    free = jax.device_get(sampling.generate(run.actor, run.state.actor_params, ids, mask, jax.random.key(0), 0.0,
                                            max_new_tokens=c.tokens.action_len, stop_ids=(-1,),
                                            pad_id=run.hp.pad_id))
    lengths = []
    for i, prompt in enumerate(prompts):
        ours = run.tokenizer(prompt, add_special_tokens=False)["input_ids"]
        assert tokenizer(prompt, add_special_tokens=False)["input_ids"] == ours
        row = torch.tensor([ours[-c.tokens.obs_len:]])
        with torch.no_grad():
            theirs = model.generate(row, attention_mask=torch.ones_like(row))[0, row.shape[1]:].tolist()
            theirs_free = model.generate(row, attention_mask=torch.ones_like(row), eos_token_id=None,
                                         max_new_tokens=c.tokens.action_len)[0, row.shape[1]:].tolist()
        assert theirs == np.asarray(greedy.tokens)[i][np.asarray(greedy.mask)[i]].tolist()
        assert theirs_free == np.asarray(free.tokens)[i].tolist()
        lengths.append(len(theirs))
    assert max(lengths) > 1, lengths  # not only a terminator


def test_exported_tokenizer_round_trips_the_task_texts(trained, exported):
    import transformers

    _, run = trained
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(exported))
    texts = list(run.task.corpus(run.config.env))[:400]
    ours = run.tokenizer(texts, add_special_tokens=False)["input_ids"]
    assert tokenizer(texts, add_special_tokens=False)["input_ids"] == ours
    assert tokenizer.batch_decode(ours) == run.tokenizer.batch_decode(ours)
    assert tokenizer.batch_decode(ours)[:50] == texts[:50]  # the word tokenizer's spacing rules: exact


def test_export_refuses_bad_input(trained, tmp_path):
    workdir, _ = trained
    empty = tmp_path / "empty_run"
    empty.mkdir()
    _one_error(_tool("export", f"--workdir={empty}", f"--out={tmp_path / 'x'}", "--config=guess_city.py:smoke"),
               "no complete checkpoint", str(empty / "checkpoints"))
    full = tmp_path / "full"
    full.mkdir()
    (full / "keep.txt").write_text("mine")
    _one_error(_tool("export", f"--workdir={workdir}", f"--out={full}"), f"--out={full}", "--overwrite")
    assert (full / "keep.txt").read_text() == "mine"
    _one_error(_tool("export", f"--workdir={workdir}"), "--out= is required")


@pytest.mark.parametrize("name", ["gpt2", "llama", "llama_tied", "mistral"])
def test_fixture_export_reproduces_the_checkpoint(hf_fixtures, tmp_path, name):
    """load -> export -> load: the exported tensors are the fixture's own, bit for bit
    (so the inverted spec writes Hugging Face's layout), and load back identically."""
    model = registry.load_pretrained(str(hf_fixtures / name))
    registry.save_pretrained(model.module, model.params, tmp_path)
    ref, got = hf_loading.CheckpointReader(hf_fixtures / name), hf_loading.CheckpointReader(tmp_path)
    ignored = [re.compile(p) for p in model.family.ignore]
    assert set(got.keys()) <= set(ref.keys())  # the same names, the prefix included
    assert all(any(r.search(k) for r in ignored) for k in set(ref.keys()) - set(got.keys()))  # buffers, copies
    for key in got.keys():
        np.testing.assert_array_equal(got.get(key), ref.get(key), err_msg=key)
    again = registry.load_pretrained(str(tmp_path))
    assert again.config == model.config
    for a, b in zip(jax.tree.leaves(again.params), jax.tree.leaves(model.params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_fixture_export_loads_in_transformers(hf_fixtures, tmp_path):
    pytest.importorskip("torch", reason="torch is needed only to check the export in transformers")
    import torch
    import transformers

    for name in ("gpt2", "llama"):
        model = registry.load_pretrained(str(hf_fixtures / name))
        registry.save_pretrained(model.module, model.params, tmp_path / name)
        theirs = transformers.AutoModelForCausalLM.from_pretrained(str(tmp_path / name)).eval()
        reference = transformers.AutoModelForCausalLM.from_pretrained(str(hf_fixtures / name)).eval()
        ids = torch.tensor([[5, 17, 3, 9, 11]])
        with torch.no_grad():
            torch.testing.assert_close(theirs(ids).logits, reference(ids).logits, rtol=0, atol=0)


@pytest.mark.parametrize("kind", ["gpt2", "llama"])
def test_from_scratch_actors_export_to_transformers(tmp_path, kind):
    """The demo's actors (``registry.build_actor`` with no checkpoint), randomly
    initialised: transformers computes the same logits and greedy tokens."""
    pytest.importorskip("torch", reason="torch is needed only to check the export in transformers")
    import torch
    import transformers

    from archer_jax import sharding

    config = guess_city.get_config("smoke")
    config.actor.kind = kind
    words = tokenization.build_word_tokenizer(["Is the city in Europe? Yes, it is.\n", "No.\n"])
    module, _ = registry.build_actor(config, words, sharding.make_mesh(config.mesh.shape))
    params = module.init(jax.random.key(1), *layers.token_init_inputs())["params"]
    params = jax.tree.map(lambda x: x * 20, params)  # logits far apart: no near-ties for argmax to split
    registry.save_pretrained(module, params, tmp_path)
    theirs = transformers.AutoModelForCausalLM.from_pretrained(str(tmp_path)).eval()
    assert theirs.config.model_type == kind
    ids = np.array([[4, 7, 3, 9, 5, 6]])
    ours = np.asarray(module.apply({"params": params}, ids, np.ones_like(ids, bool)).logits)
    with torch.no_grad():
        ref = theirs(torch.tensor(ids)).logits.numpy()
        tokens = theirs.generate(torch.tensor(ids), max_new_tokens=6, do_sample=False, eos_token_id=None,
                                 pad_token_id=0)[0, ids.shape[1]:].tolist()
    np.testing.assert_allclose(ours, ref, atol=2e-4 * np.abs(ref).max())
    gen = sampling.generate(module, params, ids, np.ones_like(ids, bool), jax.random.key(0), 0.0,
                            max_new_tokens=6, stop_ids=(-1,), pad_id=0)
    assert np.asarray(gen.tokens)[0].tolist() == tokens


def test_export_params_refuses_a_computing_transform():
    spec = {"w": hf_loading.Source(("a",), lambda x: x * 2, lambda shape: (shape,))}
    with pytest.raises(ValueError, match="computes its values"):
        hf_loading.export_params(spec, {"w": np.ones((2, 3), np.float32)})
    spec = {"w": hf_loading.Source(("a",), lambda x: x * 0, lambda shape: (shape,))}  # in range, not one to one
    with pytest.raises(ValueError, match="do not rearrange it one to one"):
        hf_loading.export_params(spec, {"w": np.ones((2, 3), np.float32)})
    spec = {"w": hf_loading.Source(("a",), lambda x: x)}  # no shapes declared
    with pytest.raises(ValueError, match="declares no checkpoint shapes"):
        hf_loading.export_params(spec, {"w": np.ones((2, 3), np.float32)})


# ----------------------------------------------------------------------------- evaluate


def test_evaluate_repeats_the_runs_last_evaluation(trained):
    workdir, run = trained
    before = _files(workdir, skip="evaluate")
    shown = run.config.transcripts  # as many as the run's own transcripts hold
    out = _tool("evaluate", f"--workdir={workdir}", f"--episodes={run.config.archer.eval_size}",
                f"--transcripts={shown}")
    assert out.returncode == 0, out.stderr
    assert _files(workdir, skip="evaluate") == before  # read-only on everything but evaluate/
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    assert "success rate" in out.stdout and "(SE)" in out.stdout
    last = [json.loads(line) for line in (workdir / metrics.METRICS_FILE).read_text().splitlines()]
    last = [row for row in last if "eval/return_mean" in row][-1]
    assert (last["stage"], last["iteration"]) == ("archer", 2) == (summary["stage"], summary["iteration"])
    for key in ("eval/return_mean", "eval/return_se", "eval/success_rate", "eval/turns_mean"):
        assert summary[key] == pytest.approx(last[key], abs=1e-9), key
    result = json.loads(Path(summary["file"]).read_text())
    assert Path(summary["file"]).parent == workdir / "evaluate"
    episodes = json.loads((workdir / metrics.EVALUATIONS_DIR / "archer_00002.json").read_text())
    assert [e["seed"] for e in result["episodes_detail"]] == episodes["seeds"]
    assert [e["hidden"] for e in result["episodes_detail"]] == episodes["hidden"]
    assert [e["return"] for e in result["episodes_detail"]] == pytest.approx(episodes["returns"])
    # The very games: the first dialogues equal the run's own transcripts.
    ours = _dialogues(Path(summary["transcripts_file"]).read_text())
    theirs = _dialogues((workdir / metrics.TRANSCRIPTS_DIR / "archer_000002.txt").read_text())
    assert len(ours) == shown >= 2 and ours == theirs


def test_evaluate_samples_the_policy_at_a_temperature(trained):
    """--temperature=T plays the same games with utterances sampled at T (the policy the
    actor phase trains at its actor_temperature), into a file of its own."""
    workdir, run = trained
    out = _tool("evaluate", f"--workdir={workdir}", "--episodes=8", "--temperature=1.0", "--transcripts=1")
    assert out.returncode == 0, out.stderr
    assert "8 games sampled at temperature 1 from seed" in out.stdout
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    assert summary["temperature"] == 1.0 and Path(summary["file"]).name == "archer_000002_n8_offset0_T1.json"
    assert "games sampled at temperature 1" in Path(summary["transcripts_file"]).read_text()
    greedy = json.loads((workdir / metrics.EVALUATIONS_DIR / "archer_00002.json").read_text())
    sampled = json.loads(Path(summary["file"]).read_text())["episodes_detail"]
    assert [e["seed"] for e in sampled] == greedy["seeds"][:8]
    # Sampling, not argmax: at temperature 1 a tiny actor's games differ from its greedy ones.
    greedy_text = (workdir / metrics.TRANSCRIPTS_DIR / "archer_000002.txt").read_text()
    assert _dialogues(Path(summary["transcripts_file"]).read_text())[0] != _dialogues(greedy_text)[0]


def test_evaluate_refuses_bad_flags(trained, tmp_path):
    workdir, _ = trained
    _one_error(_tool("evaluate", f"--workdir={workdir}", "--episodes=0"), "--episodes=0")
    _one_error(_tool("evaluate", f"--workdir={workdir}", "--temperature=-1"), "--temperature=-1")
    _one_error(_tool("evaluate", f"--workdir={tmp_path}"), "--config=", "run_info.jsonl")


# ----------------------------------------------------------------------------- play


def test_play_as_the_oracle_through_stdin(trained):
    workdir, run = trained
    city = run.runner.env.task.items[3]
    answers = "".join(f"No, guess {i}.\n" for i in range(run.config.env.max_turns))
    out = _tool("play", f"--workdir={workdir}", stdin=f"Atlantis\n{city.upper()}\n{answers}quit\n")
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert "'Atlantis' is not one of the" in text
    assert f"the hidden city: {city}" in text
    assert text.count("agent: ") == text.count("you: ") == run.config.env.max_turns  # a question, an answer
    assert f"the agent did not find it (return -{run.config.env.max_turns})" in text
    assert "bye (1 games finished)" in text


def test_play_watching_the_environment_plays_the_evaluation_games(trained):
    workdir, run = trained
    out = _tool("play", f"--workdir={workdir}", "--env", stdin="\n" * 20)  # ends at the end of input
    assert out.returncode == 0, out.stderr
    first = out.stdout.split("another game?")[0]
    turns = re.findall(r"agent: (.*)\noracle: (.*)\n", first)
    transcript = _dialogues((workdir / metrics.TRANSCRIPTS_DIR / "archer_000002.txt").read_text())[0]
    hidden, dialogue = transcript.split("\n", 1)
    assert f"the hidden city: {hidden.strip('[]')}" in first
    assert dialogue == question_game.format_observation(turns).rstrip("\n")
    assert "bye (" in out.stdout


def test_play_refuses_bad_flags(trained):
    workdir, _ = trained
    _one_error(_tool("play", f"--workdir={workdir}", "--temperature=-1"), "--temperature=-1")


def test_a_config_that_does_not_fit_the_checkpoint_is_refused(trained):
    """--config given explicitly replaces the recorded one; one whose shapes differ from
    the checkpoint's is refused with what to pass."""
    workdir, _ = trained
    out = _tool("evaluate", f"--workdir={workdir}", "--config=guess_city.py:smoke", "--config.actor.n_embd=64",
                f"--config.bc.steps={BC_STEPS}")
    _one_error(out, "pass the --config= and --config.x= overrides")
