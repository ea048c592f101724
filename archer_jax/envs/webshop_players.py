"""Scripted WebShop shoppers of mixed quality, for the offline data, and the task object.

They read only the observation text (``parse_observation``):

- ``informed``: searches with the instruction's content words (its price clause left
  out), opens the result whose title shares the most words with the instruction among
  those under the price limit (the first one on ties), chooses every option the
  instruction names, and buys. It earns the full reward on most instructions; it loses
  some where the best-looking result lacks an attribute or an option.
- ``slip_20`` / ``slip_50``: the informed shopper, but each step with probability 0.2 /
  0.5 a random action instead (a random click on the page, or a search for a few random
  words of the instruction on the start page). A slip can open the wrong product,
  choose a wrong option, buy too early or waste steps until the cap.
- ``careless_50``: the informed shopper, but on an item page where it would choose an
  option it buys instead with probability 0.5 (at each such page), so it often buys
  without the options the instruction names and loses their share of the reward.
- ``first_result``: searches like the informed shopper, opens the first result and buys
  it at once, without choosing options.
- ``random``: random searches and random clicks.

The data thus holds good and bad trajectories (``tests/test_webshop.py`` checks the
spread); ``python -m archer_jax.envs.webshop_players`` prints each shopper's mean return.
"""

from __future__ import annotations

import argparse
import re
from typing import NamedTuple

import numpy as np

from archer_jax.envs import webshop as ws

_STOP = frozenset("a an and are as at be by for from i in is it looking me need of on or that the to want which "
                  "with would find am".split())
_PAGE_LINE = re.compile(r"Page \d+ \(Total results: \d+\)")
_STEP_LINE = re.compile(r"Step: (\d+) of (\d+)")
_PRICE = re.compile(r"\$(\d+(?:\.\d+)?)")
_LIMIT = re.compile(r"price lower than (\d+(?:\.\d+)?) dollars")
_ITEM_BUTTONS = frozenset({"Description", "Features", "Reviews", "Attributes", "Buy Now", "Back to Search", "< Prev"})


class Observation(NamedTuple):
    kind: str  # "start" | "results" | "item" | "sub" | "done"
    segments: list[str]  # the page's segments (before the instruction)
    instruction: str
    step: int
    max_steps: int
    note: str


class Result(NamedTuple):
    asin: str
    title: str
    price: float | None


def parse_observation(observation: str) -> Observation:
    """Inverse of ``webshop.format_observation`` (the page's kind read from its texts)."""
    parts = observation.split(ws.SEP)
    if ws.INSTRUCTION_LABEL not in parts:
        raise ValueError(f"not a WebShop observation (no {ws.INSTRUCTION_LABEL!r} segment): {observation[:80]!r}")
    at = len(parts) - 1 - parts[::-1].index(ws.INSTRUCTION_LABEL)
    segments, rest = parts[:at], parts[at + 1:]
    step = _STEP_LINE.fullmatch(rest[1]) if len(rest) > 1 else None
    if not step:
        raise ValueError(f"not a WebShop observation (no step counter): {observation[-80:]!r}")
    note = rest[2] if len(rest) > 2 else ""
    if ws.SCORE_TEXT in segments:
        kind = "done"
    elif "[Search]" in segments:
        kind = "start"
    elif any(_PAGE_LINE.fullmatch(s) for s in segments):
        kind = "results"
    elif "[Buy Now]" in segments:
        kind = "item"
    else:
        kind = "sub"
    return Observation(kind, segments, rest[0], int(step[1]), int(step[2]), note)


def _clickable(segment: str) -> str | None:
    if segment.startswith("[[") and segment.endswith("]]"):
        return segment[2:-2]
    if segment.startswith("[") and segment.endswith("]"):
        return segment[1:-1]
    return None


def clickables(obs: Observation) -> list[str]:
    """Every button, link and option of the page (the start page's Search button left out)."""
    found = [_clickable(s) for s in obs.segments]
    return [c for c in found if c is not None and not (obs.kind == "start" and c == "Search")]


def results(obs: Observation) -> list[Result]:
    """The products of a results page, in order."""
    out, segs = [], obs.segments
    for i, s in enumerate(segs):
        asin = _clickable(s)
        if asin is not None and re.fullmatch(r"[A-Z0-9]{10}", asin) and i + 1 < len(segs):
            price = _PRICE.search(segs[i + 2]) if i + 2 < len(segs) else None
            out.append(Result(asin, segs[i + 1], float(price[1]) if price else None))
    return out


def option_groups(obs: Observation) -> list[tuple[str, list[str], str | None]]:
    """(option name, values, the chosen value or None) of an item page."""
    groups, segs = [], obs.segments
    i = segs.index("[< Prev]") + 1 if "[< Prev]" in segs else 0
    while i + 1 < len(segs):
        name, values, chosen = segs[i], [], None
        j = i + 1
        while j < len(segs) and _clickable(segs[j]) is not None and _clickable(segs[j]) not in _ITEM_BUTTONS:
            value = _clickable(segs[j])
            values.append(value)
            if segs[j].startswith("[["):
                chosen = value
            j += 1
        if _clickable(name) is not None or not values:
            break
        groups.append((name, values, chosen))
        i = j
    return groups


def content_words(instruction: str) -> list[str]:
    """The instruction's words without its price clause and filler words."""
    head = instruction.split(", and price lower than")[0]
    return [w for w in re.findall(r"[a-z0-9]+(?:[-.][a-z0-9]+)*", head.lower()) if w not in _STOP]


def price_limit(instruction: str) -> float | None:
    match = _LIMIT.search(instruction)
    return float(match[1]) if match else None


def wanted_option(instruction: str, name: str, values: list[str]) -> str | None:
    """The value of option ``name`` the instruction asks for ("name: value", else the
    longest value it names), or None."""
    text = instruction.lower()
    for value in sorted(values, key=len, reverse=True):
        if f"{name.lower()}: {value.lower()}" in text:
            return value
    for value in sorted(values, key=len, reverse=True):
        if re.search(rf"(?<![\w-]){re.escape(value.lower())}(?![\w-])", text):
            return value
    return None


def search_query(instruction: str) -> str:
    return " ".join(content_words(instruction))


def best_result(obs: Observation) -> Result | None:
    found = results(obs)
    if not found:
        return None
    wanted, limit = set(content_words(obs.instruction)), price_limit(obs.instruction)

    def score(r: Result) -> float:
        overlap = len(wanted & set(re.findall(r"[a-z0-9]+(?:[-.][a-z0-9]+)*", r.title.lower())))
        affordable = limit is None or r.price is None or r.price < limit
        return overlap + (0 if affordable else -100)

    return max(found, key=score)  # max keeps the first of equals


def informed(observation: str, rng: np.random.Generator) -> str:
    del rng
    obs = parse_observation(observation)
    if obs.kind == "start":
        return f"search[{search_query(obs.instruction)}]"
    if obs.kind == "results":
        best = best_result(obs)
        return f"click[{best.asin}]" if best is not None else "click[Back to Search]"
    if obs.kind == "item":
        for name, values, chosen in option_groups(obs):
            want = wanted_option(obs.instruction, name, values)
            if want is not None and want != chosen:
                return f"click[{want}]"
        return "click[Buy Now]"
    if obs.kind == "sub":
        return "click[< Prev]"
    return "click[Back to Search]"


def random_action(observation: str, rng: np.random.Generator) -> str:
    obs = parse_observation(observation)
    if obs.kind == "start":
        words = content_words(obs.instruction) or ["item"]
        k = int(rng.integers(1, min(3, len(words)) + 1))
        return f"search[{' '.join(words[int(i)] for i in sorted(rng.choice(len(words), k, replace=False)))}]"
    options = clickables(obs) or ["Back to Search"]
    return f"click[{options[int(rng.integers(len(options)))]}]"


def first_result(observation: str, rng: np.random.Generator) -> str:
    obs = parse_observation(observation)
    if obs.kind == "results":
        found = results(obs)
        return f"click[{found[0].asin}]" if found else "click[Back to Search]"
    if obs.kind == "item":
        return "click[Buy Now]"
    return informed(observation, rng)


def careless(skip: float):
    """The informed shopper, but where it would choose an option it buys with
    probability ``skip`` instead."""

    def act(observation: str, rng: np.random.Generator) -> str:
        action = informed(observation, rng)
        if action != "click[Buy Now]" and parse_observation(observation).kind == "item" and rng.random() < skip:
            return "click[Buy Now]"
        return action

    return act


def slip(probability: float):
    """The informed shopper, but each step a random action with ``probability``."""

    def act(observation: str, rng: np.random.Generator) -> str:
        return random_action(observation, rng) if rng.random() < probability else informed(observation, rng)

    return act


PLAYERS = {"informed": informed, "careless_50": careless(0.5), "slip_20": slip(0.2), "slip_50": slip(0.5),
           "first_result": first_result, "random": random_action}
DEFAULT_MIX = {"informed": 0.25, "slip_20": 0.2, "slip_50": 0.2, "first_result": 0.15, "random": 0.2}

TASKS = (ws.WebShop(PLAYERS, DEFAULT_MIX),)


def main(argv=None) -> None:
    """Mean return, success rate and steps of every shopper on the same episodes."""
    from archer_jax.envs import base

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--episodes", type=int, default=200)
    parser.add_argument("--url", default="", help="a WebShop server (default: the embedded shop)")
    parser.add_argument("--goals_start", type=int, default=ws.ENV_DEFAULTS["goals_start"])
    parser.add_argument("--num_goals", type=int, default=ws.ENV_DEFAULTS["num_goals"])
    args = parser.parse_args(argv)
    task = TASKS[0]
    env = {"url": args.url, "goals_start": args.goals_start, "num_goals": args.num_goals, "max_turns": ws.MAX_STEPS}
    print(f"{'player':>14} {'mean return':>12} {'success':>8}")
    for name, player in task.players.items():
        returns, successes, _ = base.play_seeds(task, env, player, range(args.episodes))
        print(f"{name:>14} {returns.mean():12.3f} {successes.mean():8.2f}")


if __name__ == "__main__":
    main()
