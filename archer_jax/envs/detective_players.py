"""Scripted Detective players of mixed quality, for the offline data, and the task object.

`walkthrough` plays jericho's walkthrough for the game (all 350 points in 50 steps; it
reads the step counter of the observation to know which command is next). The noisy
players mix in random commands: a valid action of the observation where it shows them,
else one of the walkthrough's own commands or a direction; a random command also skips
a walkthrough command, so one early slip can cost most of the score. The data thus holds
good and bad trajectories. `careless` plays the walkthrough's route but examines
every object the walkthrough takes (nothing it leaves is needed later): 300 points, a
systematic error that imitation of data where it is the most common player keeps.
`careless_80` examines each of them with probability 0.8 (300-350 points), so the
states after some TAKEs and not others are in its data too.
"""

from __future__ import annotations

import functools

import numpy as np

from archer_jax.envs import detective as dt

DIRECTIONS = ("north", "south", "east", "west", "up", "down")


@functools.cache
def walkthrough_commands() -> tuple[str, ...]:
    """jericho's walkthrough of Detective (by the game's md5: no game file needed)."""
    return tuple(dt.walkthrough_of(dt.DETECTIVE_MD5))


def walkthrough(observation: str, rng: np.random.Generator) -> str:
    del rng
    commands = walkthrough_commands()
    step = dt.parse_observation(observation).step
    return commands[step] if step < len(commands) else "look"


def careless(skip: float):
    """The walkthrough's route, examining instead of taking: at each TAKE X (10 points)
    it says EXAMINE X (none) with probability ``skip``, independently per object; the
    route, and so every later command, stays the same (nothing left is needed later)."""

    def act(observation: str, rng: np.random.Generator) -> str:
        command = walkthrough(observation, rng)
        verb, _, rest = command.partition(" ")
        return f"EXAMINE {rest}" if verb.upper() == "TAKE" and rng.random() < skip else command

    return act


def random_command(observation: str, rng: np.random.Generator) -> str:
    actions = dt.parse_observation(observation).valid_actions
    if not actions:  # not shown (or none left): the walkthrough's commands and directions
        actions = tuple(dict.fromkeys(walkthrough_commands() + DIRECTIONS))
    return actions[int(rng.integers(len(actions)))]


def noisy(slip: float):
    """The walkthrough, but each step a random command with probability ``slip``."""

    def act(observation: str, rng: np.random.Generator) -> str:
        return random_command(observation, rng) if rng.random() < slip else walkthrough(observation, rng)

    return act


PLAYERS = {"walkthrough": walkthrough, "careless": careless(1.0), "careless_80": careless(0.8),
           "slip_10": noisy(0.1), "slip_30": noisy(0.3), "random": random_command}
DEFAULT_MIX = {"walkthrough": 0.1, "careless": 0.5, "slip_10": 0.1, "slip_30": 0.1, "random": 0.2}

TASKS = (dt.Detective(PLAYERS, DEFAULT_MIX),)
