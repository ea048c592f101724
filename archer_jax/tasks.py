"""Finds a task (``envs.base.Task``) by its name or by a dotted path.

The built-in tasks are the ``TASKS`` tuples of the players modules
(``archer_jax/envs/*_players.py``): a new task is its environment module, a players
module that lists its task object, and a config file; nothing here names a task. A
user's own task needs no change to the package: ``config.task = "my_pkg.my_env:TASK"``
(or ``my_pkg.my_env.TASK``) names any object that has the ``Task`` protocol's fields
and methods.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil

from archer_jax import config_checks
from archer_jax.envs import base

_PLAYERS_SUFFIX = "_players"


@functools.cache
def builtin() -> dict[str, base.Task]:
    """name -> task object, from every ``archer_jax.envs.*_players`` module's ``TASKS``."""
    import archer_jax.envs as envs

    found: dict[str, base.Task] = {}
    for module in pkgutil.iter_modules(envs.__path__):
        if module.name.endswith(_PLAYERS_SUFFIX):
            for task in getattr(importlib.import_module(f"{envs.__name__}.{module.name}"), "TASKS", ()):
                if task.name in found:
                    raise RuntimeError(f"two built-in tasks are named {task.name!r}")
                found[task.name] = task
    return found


def names() -> list[str]:
    return sorted(builtin())


def get(name: str) -> base.Task:
    """The task ``config.task`` names: a built-in name, or ``module:attribute`` /
    ``module.attribute`` of a user's task object. A ConfigError names the field otherwise."""
    tasks = builtin()
    if name in tasks:
        return tasks[name]
    if "." not in name and ":" not in name:
        raise config_checks.ConfigError(f"config.task = {name!r}: unknown task; the built-in ones are {names()}, or "
                                        "name your own task object as 'module:ATTRIBUTE'")
    module_name, _, attribute = name.rpartition(":") if ":" in name else name.rpartition(".")
    try:
        task = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as error:
        raise config_checks.ConfigError(f"config.task = {name!r}: cannot import {attribute!r} from module "
                                        f"{module_name!r} ({error})") from error
    missing = [field for field in ("name", "players", "default_mix", "make_env", "corpus", "one_turn_observation")
               if not hasattr(task, field)]
    if missing:
        raise config_checks.ConfigError(f"config.task = {name!r} is not a task object (envs.base.Task): it has no "
                                        f"{missing}")
    return task

