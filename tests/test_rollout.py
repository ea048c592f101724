"""The rollout loop: Monte-Carlo returns and per-conversation temperatures."""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from archer_jax import rollout, sampling, tasks
from archer_jax.data import tokenization
from archer_jax.models import gpt2


def test_discounted_returns_by_hand():
    # Two conversations over 3 turn slots: the first lasts 3 turns and wins on the last,
    # the second ends (capped) after 2 turns.
    rewards = np.array([[-1.0, -1.0], [-1.0, -1.0], [0.0, 0.0]], np.float32)
    valid = np.array([[True, True], [True, True], [True, False]])
    got = rollout.discounted_returns(rewards, valid, gamma=0.5)
    want = np.array([[-1.5, -1.5], [-1.0, -1.0], [0.0, 0.0]], np.float32)
    np.testing.assert_allclose(got, want)


def tiny_guess_city_policy(env_config):
    """Guess My City with ``env_config``, its word tokenizer, and an untrained 1-layer
    GPT-2 policy: (task, tokenizer, params, jitted generate)."""
    task = tasks.get("guess_city")
    tokenizer = tokenization.build_word_tokenizer(task.corpus(env_config))
    module = gpt2.GPT2LMHeadModel(gpt2.GPT2Config(vocab_size=len(tokenizer), n_positions=72, n_embd=32, n_layer=1,
                                                  n_head=2))
    params = module.init(jax.random.key(0), jnp.ones((1, 4), jnp.int32), jnp.ones((1, 4), bool))["params"]
    policy = jax.jit(functools.partial(sampling.generate, module, max_new_tokens=8,
                                       stop_ids=tokenization.terminator_ids(tokenizer, "\n"),
                                       pad_id=tokenizer.pad_token_id))
    return task, tokenizer, params, policy


def test_greedy_rows_of_a_mixed_rollout_play_as_a_greedy_rollout():
    env_config = {"max_turns": 4, "num_items": 0}
    task, tokenizer, params, policy = tiny_guess_city_policy(env_config)
    runner = rollout.RolloutRunner(task.make_env(env_config, 4), policy, tokenizer, obs_len=64, terminator="\n",
                                   pad_id=tokenizer.pad_token_id, gamma=0.95, max_turns=4)
    seeds, key = [11, 12, 13, 14], jax.random.key(5)
    mixed = runner.run(params, seeds, key, np.array([0.0, 0.0, 1.0, 1.0]))
    greedy = runner.run(params, seeds, key, 0.0)
    assert mixed.dialogues[:2] == greedy.dialogues[:2]
    np.testing.assert_array_equal(mixed.returns[:2], greedy.returns[:2])
    assert policy._cache_size() == 1  # a scalar temperature is passed on per row, too


def test_reward_scale_reaches_the_learners_rows_and_not_the_reported_returns():
    env_config = {"max_turns": 3, "num_items": 0}
    task, tokenizer, params, policy = tiny_guess_city_policy(env_config)

    def play(scale):
        runner = rollout.RolloutRunner(task.make_env(env_config, 2), policy, tokenizer, obs_len=48, terminator="\n",
                                       pad_id=tokenizer.pad_token_id, gamma=0.9, max_turns=3, reward_scale=scale)
        return runner.run(params, [3, 4], jax.random.key(1), 1.0)

    plain, scaled = play(1.0), play(0.1)
    assert plain.dialogues == scaled.dialogues
    np.testing.assert_array_equal(scaled.returns, plain.returns)  # reported in the game's units
    assert plain.transitions["reward"][plain.valid].min() == -1.0  # the question games' -1 per turn
    for name in ("reward", "mc_return"):
        np.testing.assert_allclose(scaled.transitions[name], 0.1 * plain.transitions[name], rtol=1e-6)
    np.testing.assert_array_equal(scaled.transitions["episode_return"], plain.transitions["episode_return"])


def test_a_transcript_lists_the_turns_only_where_the_final_observation_lacks_them():
    dialogue = "Questioner: Is it a dog?\nAnswerer: No.\nQuestioner: Is it a cat?\nAnswerer: Yes."
    assert rollout.transcript(dialogue, [("Is it a dog?", -1.0), ("Is it a cat?", 0.0)]) == dialogue
    scene = "Surroundings: << Outside >>\nStep: 2 of 50"
    text = rollout.transcript(scene, [("TAKE PAPER\n", 10.0), ("north", 0.0)])
    assert text.startswith(scene)
    assert text.endswith("Turns played (command [reward]):\n  1. TAKE PAPER  [+10]\n  2. north  [+0]")
