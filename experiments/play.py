"""Play against a run's trained agent in the terminal.

    python -m experiments.play --workdir=/tmp/gc_demo            # you answer the agent's questions
    python -m experiments.play --workdir=/tmp/gc_demo --env      # the task's own environment answers

Question games (Guess My City, Twenty Questions): by default you are the oracle. Pick
the hidden item from the task's list (Enter: the game picks one and shows it), then
answer each question the agent asks on one line; the game itself still decides when
the agent has named the item (its win check), as in training. With ``--env`` the
task's own environment answers (for any task, also the text adventure) and you watch
the game turn by turn: Enter shows the next turn. Game k plays seed
EVAL_SEED_BASE + seed_offset + k, so with ``--env`` the games are training's
evaluation games (greedy, the default ``--temperature=0``, plays them exactly).

Input is read line by line from stdin (a pipe works); "quit" or the end of input
stops. The run is opened read-only (``experiments.run_folder``); nothing is written.
"""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Callable, Sequence
from typing import Any, TextIO

import numpy as np
from absl import app, flags, logging

from experiments import run_folder
from experiments.run_folder import fail

_ENV = flags.DEFINE_bool("env", False, "the task's own environment answers; you watch turn by turn")
_TEMPERATURE = flags.DEFINE_float("temperature", 0.0, "the agent's sampling temperature (0: greedy, as evaluation)")
_SEED_OFFSET = flags.DEFINE_integer("seed_offset", 0, "game k plays seed EVAL_SEED_BASE + seed_offset + k")


class Quit(BaseException):
    """The person typed "quit" or closed the input. A BaseException (like
    KeyboardInterrupt): the question game retries an oracle's Exceptions, and a person
    leaving is not a fault to retry."""


class Console:
    """Line-by-line terminal I/O: ``ask`` prints a prompt and reads one line (Quit on
    "quit" or the end of input); ``say`` prints."""

    def __init__(self, stdin: TextIO, stdout: TextIO):
        self.stdin, self.stdout = stdin, stdout

    def say(self, text: str = "") -> None:
        print(text, file=self.stdout, flush=True)

    def ask(self, prompt: str) -> str:
        print(prompt, end="", file=self.stdout, flush=True)
        line = self.stdin.readline()
        if not line:
            self.say()
            raise Quit
        line = line.rstrip("\n")
        if line.strip().lower() == "quit":
            raise Quit
        return line


class PersonOracle:
    """A question game's oracle (``question_game.Oracle``): the person answers."""

    def __init__(self, console: Console):
        self.console = console

    def answer(self, hidden_items: Sequence[str], questions: Sequence[str]) -> list[str]:
        del questions  # already shown by the game loop
        return [self.console.ask("you: ").strip() or "I don't know." for _ in hidden_items]


class Agent:
    """The run's actor on one conversation: observation text -> utterance."""

    def __init__(self, run: Any, temperature: float):
        import jax

        self.run, self.temperature = run, temperature
        self.key = jax.random.key(run.config.seed)
        self.calls = 0

    def act(self, observation: str) -> str:
        import jax

        from archer_jax.data import tokenization

        c, run = self.run.config, self.run
        ids, mask = tokenization.encode_left(run.tokenizer, [observation], c.tokens.obs_len, pad_id=run.hp.pad_id)
        gen = jax.device_get(run.runner.policy(run.state.actor_params, ids, mask,
                                               jax.random.fold_in(self.key, self.calls),
                                               np.full(1, self.temperature, np.float32)))
        self.calls += 1
        return tokenization.decode_utterances(run.tokenizer, gen.tokens, gen.mask, c.tokens.terminator)[0]


def _pick_hidden(console: Console, items: Sequence[str], drawn: str, what: str) -> str:
    """The person's hidden item (one of ``items``, any case), or ``drawn`` on Enter."""
    by_name = {item.lower(): item for item in items}
    while True:
        line = console.ask(f"your {what} (Enter: the game picks one): ").strip()
        if not line:
            console.say(f"the game picked: {drawn}")
            return drawn
        if line.lower() in by_name:
            return by_name[line.lower()]
        console.say(f"'{line}' is not one of the {len(items)} items of this game; type one of them as listed")


def play_question_game(run: Any, agent: Agent, console: Console, seed: int, *, person: bool) -> None:
    """One question game: the person answers (``person``) or the run's oracle does."""
    from archer_jax.envs import question_game

    task = run.runner.env.task
    what = "city" if run.config.task == "guess_city" else "item"
    hidden = None  # drawn from the seed, unless the person picks it
    if person:
        task = task.with_oracle(PersonOracle(console))
        drawn = task.items[question_game.hidden_index(seed, len(task.items))]
        hidden = [_pick_hidden(console, task.items, drawn, what)]
        console.say("answer each question on one line (\"quit\" stops)")
    env = question_game.BatchedQuestionGame(task, 1, max_tries=1)
    observation = env.reset([seed], hidden)[0]
    console.say(f"[seed {seed}] the hidden {what}: {env.hidden[0]}")
    ret = 0.0
    for turn in range(env.max_turns):
        question = question_game.clean_question(agent.act(observation))
        console.say(f"agent: {question}")
        observations, rewards, dones = env.step([question])
        observation, ret = observations[0], ret + float(rewards[0])
        answer = env.history(0)[-1][1]
        if not person or env.successes[0]:
            console.say(f"{'game' if person else 'oracle'}: {answer}")
        if dones[0]:
            break
        if not person:
            console.ask("")
    result = f"the agent found it in {turn + 1} turns" if env.successes[0] else "the agent did not find it"
    console.say(f"{result} (return {ret:g})")


def watch_env(run: Any, agent: Agent, console: Console, seed: int) -> None:
    """One game of any task in its own environment; Enter shows each next turn."""
    env = run.task.make_env(run.config.env, 1)
    observation = env.reset([seed])[0]
    console.say(f"[seed {seed}] {env.hidden[0]}\n{observation}")
    ret = 0.0
    for turn in range(env.max_turns):
        action = agent.act(observation)
        console.say(f"agent: {action}")
        observations, rewards, dones = env.step([action])
        observation, ret = observations[0], ret + float(rewards[0])
        console.say(observation)
        if dones[0]:
            break
        console.ask("")
    console.say(f"{'won' if env.successes[0] else 'not won'} in {turn + 1} turns (return {ret:g})")


def play(run: Any, console: Console, *, person: bool, temperature: float, seed_offset: int) -> int:
    """Games until the person quits; returns how many were started."""
    from archer_jax import rollout
    from archer_jax.envs import question_game

    question = isinstance(run.runner.env, question_game.BatchedQuestionGame)
    agent = Agent(run, temperature)
    if question and person:
        items = run.runner.env.task.items
        console.say(f"{len(items)} items may be hidden:\n" + textwrap.fill(", ".join(items), 100))
    games = 0
    game: Callable[[int], None] = (
        (lambda s: play_question_game(run, agent, console, s, person=person)) if question
        else (lambda s: watch_env(run, agent, console, s)))
    try:
        while True:
            game(rollout.EVAL_SEED_BASE + seed_offset + games)
            games += 1
            console.ask("another game? (Enter: yes, quit: stop) ")
    except Quit:
        console.say(f"bye ({games} games finished)")
    return games


def main(argv: list[str]) -> None:
    del argv
    if not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)
    if _TEMPERATURE.value < 0:
        fail(f"--temperature={_TEMPERATURE.value}: must be >= 0")
    if _SEED_OFFSET.value < 0:
        fail(f"--seed_offset={_SEED_OFFSET.value}: must be >= 0")
    run = run_folder.open_run()
    run.checkpointer.close()  # everything needed is restored
    from archer_jax.envs import question_game

    if not _ENV.value and not isinstance(run.runner.env, question_game.BatchedQuestionGame):
        fail(f"config.task = {run.config.task!r} is not a question game, so there is no oracle for a person to "
             "play; pass --env to watch the agent in the task's own environment")
    play(run, Console(sys.stdin, sys.stdout), person=not _ENV.value, temperature=_TEMPERATURE.value,
         seed_offset=_SEED_OFFSET.value)


if __name__ == "__main__":
    sys.argv = run_folder.prepare_argv(sys.argv)
    app.run(main)
