"""The asymmetric critic (``config.critic.privileged_len``): what the environment hides
travels with every turn into the replay buffer and into the critic's input, and never
into the actor's."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from archer_jax import config_checks, length_buckets, replay, rollout, sampling, sharding, tasks, train_state, trainer
from archer_jax.algorithms import archer
from archer_jax.data import tokenization
from archer_jax.models import gpt2, value_heads
from experiments import probe_critic
from experiments.configs import twenty_questions_subset

OBS, ACT, HID, VOCAB, PAD, STOP = 10, 4, 3, 40, 0, 2


def _actor(positions: int = OBS + ACT + HID) -> gpt2.GPT2LMHeadModel:
    return gpt2.GPT2LMHeadModel(gpt2.GPT2Config(vocab_size=VOCAB, n_positions=positions, n_embd=16, n_layer=1,
                                                n_head=2))


def _rows(n: int, hidden: np.ndarray | None, reward: np.ndarray) -> replay.Transitions:
    """n terminal turns with ONE observation and ONE action; ``hidden`` [n] a token per
    row (its slot 0 padding), or None."""
    obs = np.tile(np.arange(5, 5 + OBS), (n, 1)).astype(np.int32)
    act = np.tile(np.array([7, 8, STOP, PAD]), (n, 1)).astype(np.int32)
    rows = replay.Transitions(
        obs=obs, obs_mask=np.ones_like(obs, bool), action=act, action_mask=act != PAD, next_obs=obs,
        next_obs_mask=np.ones_like(obs, bool), reward=reward.astype(np.float32), done=np.ones(n, bool),
        mc_return=reward.astype(np.float32), episode_return=reward.astype(np.float32), turn=np.zeros(n, np.int32))
    if hidden is None:
        return rows
    ids = np.zeros((n, HID), np.int32)
    ids[:, 1], ids[:, 2] = hidden, STOP
    return rows.replace(hidden=ids, hidden_mask=ids != PAD)


def test_the_buffer_keeps_hidden_columns_and_refuses_a_batch_that_lacks_them():
    buffer = replay.ReplayBuffer.create(4, OBS, ACT, hidden_len=HID)
    assert buffer.hidden_len == HID and replay.ReplayBuffer.create(4, OBS, ACT).hidden is None
    buffer = replay.insert(buffer, _rows(3, np.array([11, 12, 13]), np.zeros(3)))
    got = replay.gather(buffer, jnp.array([2, 0]))
    np.testing.assert_array_equal(got.hidden, [[0, 13, STOP], [0, 11, STOP]])
    np.testing.assert_array_equal(got.hidden_mask, [[False, True, True]] * 2)
    with pytest.raises(ValueError, match="the buffer needs the field 'hidden' and the batch has none"):
        replay.insert(buffer, _rows(1, None, np.zeros(1)))
    with pytest.raises(ValueError, match="the buffer keeps no field 'hidden' and the batch has it"):
        replay.insert(replay.ReplayBuffer.create(4, OBS, ACT), _rows(1, np.array([11]), np.zeros(1)))


def test_a_padded_hidden_prefix_leaves_the_critic_unchanged_and_a_real_one_changes_it():
    """Positions and attention come from the mask: [hidden; obs] with every hidden slot
    masked reads as obs alone, so the privileged critic is the plain one plus what the
    hidden tokens add."""
    critic = value_heads.DoubleCritic(value_heads.CausalEncoder(_actor()), hidden_size=16, joint=True)
    rows = _rows(2, np.array([11, 12]), np.zeros(2))
    params = critic.init(jax.random.key(0), rows.obs, rows.obs_mask, rows.action, rows.action_mask)

    def q(obs, mask):
        out = critic.apply(params, obs, mask, jnp.asarray(rows.action), jnp.asarray(rows.action_mask))
        return np.asarray(out.q1), np.asarray(out.v1)

    identity = lambda ids, mask: (ids, mask)  # noqa: E731
    plain = q(*archer.critic_view(identity, rows.obs, rows.obs_mask))
    masked = q(*archer.critic_view(identity, rows.obs, rows.obs_mask, rows.hidden, np.zeros_like(rows.hidden_mask)))
    real = q(*archer.critic_view(identity, rows.obs, rows.obs_mask, rows.hidden, rows.hidden_mask))
    np.testing.assert_allclose(masked, plain, atol=1e-5)
    assert plain[0][0] == pytest.approx(plain[0][1])  # the same conversation twice
    assert abs(real[0][0] - real[0][1]) > 1e-4  # told apart by the hidden token alone


def test_the_critic_view_packs_hidden_text_against_the_observation():
    """The hidden text sits right before the observation's first token and all padding
    to the left, so a row spans only its real tokens (what the length groups cut to)."""
    hidden = np.array([[0, 0, 7, 8], [0, 0, 0, 9]])
    hidden_mask = hidden > 0
    obs = np.array([[0, 0, 0, 1, 2], [0, 3, 4, 5, 6]])
    obs_mask = obs > 0
    ids, mask = archer.critic_view(lambda i, m: (i, m), jnp.asarray(obs), jnp.asarray(obs_mask),
                                   jnp.asarray(hidden), jnp.asarray(hidden_mask))
    np.testing.assert_array_equal(np.where(mask, ids, 0), [[0, 0, 0, 0, 0, 7, 8, 1, 2], [0, 0, 0, 0, 9, 3, 4, 5, 6]])
    np.testing.assert_array_equal(length_buckets.spans(mask), [4, 5])


@pytest.fixture(scope="module")
def phases():
    """The critic and actor phases of a tiny GPT-2 actor and a critic of its
    architecture, on a buffer whose reward depends on the hidden token only: +1 where
    it is 11, 0 where it is 12, the conversation and the utterance always the same."""
    mesh = sharding.make_mesh((2, 2, 2))
    actor = _actor()
    critic = value_heads.DoubleCritic(value_heads.CausalEncoder(actor), hidden_size=16, joint=True)
    hp = archer.ArcherHParams(gamma=0.9, tau=0.5, critic_batch_size=16, actor_batch_size=8, critic_epochs=150,
                              actor_epochs=1, actor_samples=2, max_new_tokens=ACT, stop_ids=(STOP,), pad_id=PAD)
    tx = train_state.make_optimizer(3e-3, max_grad_norm=1.0)
    state, state_shardings = train_state.create_state(jax.random.key(0), actor=actor, critic=critic, actor_tx=tx,
                                                      critic_tx=tx, mesh=mesh)
    hidden = np.tile([11, 12], 8)
    buffers = {}
    for name, h in (("privileged", hidden), ("plain", None)):
        buffer, shardings = replay.create_sharded(16, OBS, ACT, mesh, hidden_len=HID if h is not None else 0)
        buffers[name] = replay.make_insert(shardings, mesh)(buffer, _rows(16, h, (hidden == 11).astype(float)))
    made = {name: archer.make_phases(actor=actor, critic=critic, hp=hp, bridge=lambda i, m: (i, m), actor_tx=tx,
                                     critic_tx=tx, state_shardings=state_shardings,
                                     buffer_shardings=replay.buffer_shardings(buffers[name], mesh), mesh=mesh)
            for name in buffers}
    scores = jax.jit(functools.partial(archer.critic_scores, critic=critic, bridge=lambda i, m: (i, m)))
    return jax.device_get(state), state_shardings, buffers, made, scores


def test_the_privileged_critic_learns_what_only_the_hidden_state_decides(phases):
    """A critic of the conversation alone sees one input here and can only learn the
    mean outcome (0.5); the privileged one separates the two (targets 1 and 0)."""
    initial, state_shardings, buffers, made, scores = phases
    buffer, rows = buffers["privileged"], jnp.arange(2)  # hidden 11, then 12
    before, _ = jax.device_get(scores(jax.device_put(initial, state_shardings), replay.gather(buffer, rows)))
    state, _ = made["privileged"].critic(jax.device_put(initial, state_shardings), buffer)
    q, _ = jax.device_get(scores(state, replay.gather(buffer, rows)))
    assert q[0] - q[1] > 0.5 and abs(before[0] - before[1]) < 0.1, (before, q)


def test_the_actor_never_reads_the_hidden_state(phases):
    """On a privileged buffer the actor phase samples the same utterances with the same
    log-probabilities as on the plain one (same state, same key): the hidden text
    reaches only the critic's scores, which differ."""
    initial, state_shardings, buffers, made, _ = phases
    out = {name: jax.device_get(made[name].actor(jax.device_put(initial, state_shardings), buffers[name])[1])
           for name in buffers}
    for metric in ("actor/logp_mean", "actor/identical_samples"):
        assert out["privileged"][metric] == pytest.approx(out["plain"][metric], abs=1e-6)
    assert out["privileged"]["actor/q_within_std"] != pytest.approx(out["plain"]["actor/q_within_std"], abs=1e-7)


def test_rollout_rows_carry_their_episodes_hidden_text_and_play_as_without_it():
    task, env_config = tasks.get("twenty_questions_subset"), {"max_turns": 3, "num_items": 0}
    tokenizer = tokenization.build_word_tokenizer([*task.corpus(env_config), *task.hidden_texts(env_config)])
    module = gpt2.GPT2LMHeadModel(gpt2.GPT2Config(vocab_size=len(tokenizer), n_positions=64, n_embd=16, n_layer=1,
                                                  n_head=2))
    params = module.init(jax.random.key(0), jnp.ones((1, 4), jnp.int32), jnp.ones((1, 4), bool))["params"]
    pad = tokenizer.pad_token_id
    policy = jax.jit(functools.partial(sampling.generate, module, max_new_tokens=6, pad_id=pad,
                                       stop_ids=tokenization.terminator_ids(tokenizer, "\n")))
    played = {}
    for hidden_len in (0, 4):
        runner = rollout.RolloutRunner(task.make_env(env_config, 3), policy, tokenizer, obs_len=48, terminator="\n",
                                       pad_id=pad, gamma=0.9, max_turns=3, hidden_len=hidden_len)
        played[hidden_len] = runner.run(params, [1, 2, 3], jax.random.key(1), 1.0)
    plain, privileged = played[0], played[4]
    assert "hidden" not in plain.transitions
    for name in ("obs", "action", "reward", "done"):
        np.testing.assert_array_equal(privileged.transitions[name], plain.transitions[name])
    want, want_mask = replay.hidden_ids(tokenizer, privileged.hidden, 4, pad)
    assert not (want == tokenizer.unk_token_id).any()  # the items are in the vocabulary
    rows = privileged.transitions["hidden"].reshape(3, 3, 4)  # [turn, episode, H]
    for turn in range(3):
        np.testing.assert_array_equal(rows[turn], want)
        np.testing.assert_array_equal(privileged.transitions["hidden_mask"].reshape(3, 3, 4)[turn], want_mask)


@pytest.mark.parametrize("algorithm,length,message", [
    ("archer", -1, "config.critic.privileged_len = -1: a number of tokens >= 0"),
    ("bc", 4, "config.algorithm = 'bc' has no utterance-level critic"),
    ("chai", 4, "CHAI's critic picks what the agent says"),
])
def test_bad_privileged_lengths_are_refused(algorithm, length, message):
    config = twenty_questions_subset.get_config("smoke")
    config.algorithm, config.critic.privileged_len = algorithm, length
    with pytest.raises(config_checks.ConfigError, match=message):
        config_checks.check_config(config)


def test_a_privileged_run_trains_and_its_critic_is_probed_with_each_states_item(tmp_path):
    """The whole path: a tokenizer that knows the items, BC data and rollouts that
    carry them, a critic of the actor's architecture reading them, and the probe."""
    config = twenty_questions_subset.get_config("smoke")
    config.critic.update(kind="actor", privileged_len=4, pooling="pooled")
    config.bc.iterations, config.archer.iterations, config.archer.warmup_iter = 1, 1, 0
    trainer.train(config, tmp_path)
    run = trainer.setup(config, tmp_path, read_only=True)
    try:
        assert run.buffer.hidden_len == 4 and int(run.buffer.size) > 0
        filled = np.asarray(run.buffer.hidden_mask)[: int(run.buffer.size)]
        assert filled.any(axis=1).all()  # every collected turn has its item
        items = set(tasks.get("twenty_questions_subset").hidden_texts(config.env))
        assert items <= set(run.tokenizer.get_vocab())
        summary, details = probe_critic.probe(run, states=2, samples=2, rollouts=2, seed=0)
    finally:
        run.checkpointer.close()
    assert summary["states"] == 2 and len(details) == 2


def test_the_subset_demos_critic_reads_every_hidden_object_whole():
    """The Subset demo sets ``privileged_len``: with the tokenizer its run builds, each
    of the ten objects and its newline fit the window (none cut, none unknown), and the
    config passes the checks a run makes."""
    config = twenty_questions_subset.get_config("demo")
    assert config.critic.privileged_len > 0
    config_checks.check_config(config)
    task = tasks.get(config.task)
    items = list(task.hidden_texts(config.env))
    tok = trainer.word_tokenizer(config, task)
    ids, mask = replay.hidden_ids(tok, items, config.critic.privileged_len, PAD)
    unk = tok.unk_token_id
    for item, row, keep in zip(items, ids, mask):
        whole = tok(f"{item}\n", add_special_tokens=False)["input_ids"]
        assert unk not in whole and list(row[keep.astype(bool)]) == whole, item


@pytest.mark.parametrize("algorithm,kept", [("archer", 8), ("archer_baseline", 8), ("offline_archer", 8), ("chai", 0),
                                            ("ppo", 0), ("filtered_bc", 0), ("bc", 0)])
def test_the_subset_demo_gives_hidden_tokens_only_to_a_critic_that_only_trains(algorithm, kept):
    """``run.py --config=twenty_questions_subset.py:demo --config.algorithm=A`` runs for
    every A: the demo file's privileged tokens go to ArCHer's critics, and to no critic
    that acts (CHAI) or is absent, with a note; set by a flag, the check refuses them."""
    from experiments import run

    config = twenty_questions_subset.get_config("demo")
    config.algorithm = algorithm
    note = run.drop_unusable_privileged(config, ["run.py", f"--config.algorithm={algorithm}"])
    assert config.critic.privileged_len == kept
    assert (note is None) == bool(kept)
    config_checks.check_config(config)
    config = twenty_questions_subset.get_config("demo")
    config.algorithm = algorithm
    assert run.drop_unusable_privileged(config, ["run.py", "--config.critic.privileged_len=8"]) is None
    assert config.critic.privileged_len == 8
    if not kept:
        with pytest.raises(config_checks.ConfigError, match="config.critic.privileged_len = 8: .*set it to 0"):
            config_checks.check_config(config)


def test_every_algorithm_on_one_config_gets_the_same_word_tokenizer():
    """The tokenizer (hence the BC actor a comparison starts every algorithm from) depends
    on the task only: a baseline that cannot read the hidden object (privileged_len 0)
    numbers the words as the privileged ArCHer run does."""
    config = twenty_questions_subset.get_config("demo")
    task = tasks.get(config.task)
    want = trainer.word_tokenizer(config, task).get_vocab()
    config.algorithm, config.critic.privileged_len = "filtered_bc", 0
    assert trainer.word_tokenizer(config, task).get_vocab() == want
