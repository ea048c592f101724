"""Detective: the ArCHer paper's text adventure, run on the real Z-machine through jericho.

The agent types one command per turn into "Detective" (Matt Barringer, Inform port by
Stuart Moore; `detective.z5`). The interpreter is jericho's frotz; nothing about the game
is reimplemented here. One turn:

- Action: the first line of the generated text, stripped (the reference keeps
  `action.split("\\n")[0]`), sent verbatim to the game; it need not be a valid action.
  Every step counts, including commands the parser rejects.
- Reward: the game's score increase on that step (+10 for most clues, +100 for the
  arrest). The 10 points the game awards while starting are not counted, so returns sum
  to `final score - 10`, at most 350. A RESTART ("restart", then "y") makes the step's
  reward negative (the score drops back to 10); the sum over an episode still telescopes.
- Done: victory, death, or `max_steps` steps (the reference's 50-step cap). A finished
  row ignores its actions (reward 0, done stays True) until the next `reset`.
- Files: a command with a word of the game's file verbs (SAVE, RESTORE, SCRIPT,
  TRANSCRIPT, NOSCRIPT, UNSCRIPT, RECORDING, REPLAY) is not sent; the step counts, the
  game state is unchanged and the response says the feature is off. In the reference such
  commands go through: jericho's frotz then writes `detective.qzl` or `script` into the
  process's working directory, and RESTORE would load a game saved in another episode
  (a score taken across episodes). The game's other verbs, debugging ones (PURLOIN, GOTO)
  included, behave as in the reference.

The observation rebuilds what the reference (`archer/environment/adventure_env.py`)
shows the agent, in the same order: the room (`look`), the inventory (`inventory`), the
game's response to the last command (the opening text at reset) and the valid actions.
`look` and `inventory` run on a saved copy of the game state that is restored at once,
so they cost no move. Unlike the reference, which concatenates the four raw texts with no
separator (and the valid actions as a Python list repr), each part here is one labelled
line with its whitespace collapsed:

    Surroundings: << Chief's office >> You are standing in the Chief's office. ...
    Inventory: You are carrying nothing.
    Last response: [Type "help" for more information about this version] Detective ...
    Step: 0 of 50
    Valid actions: east, north, take paper, west

Why: the game's text is full of blank lines and indentation (one token each for a small
BPE) and the reference's run-on string gives a small model no cue where the room ends and
the response begins. The labels (about a dozen GPT-2 tokens, fewer than the collapsed
whitespace saves) make the observation parseable (`parse_observation`, for scripted
players), as the question games' one-turn-per-line format is. The content is the
reference's (the room text still appears twice at reset), plus one line the reference
does not have: the steps taken and the cap. The observation holds no history, so without
it neither the policy nor the critic can tell how many steps are left, and the value of a
state depends on that (the same room at step 5 and at step 49 are worth different
returns); scripted players read it too (the walkthrough's next command).
Policies truncate observations on the left, so the last response and the valid actions,
at the end, survive truncation. When the game has ended (victory or death) the game
answers `look` and `inventory` with its RESTART/QUIT prompt and there are no valid
actions; that text is kept, as in the reference.

Valid actions come from jericho's `get_valid_actions` (it tries the game's action
templates on words found in the room and inventory texts and keeps those that change
the world); sorted, since jericho's order follows set iteration. The call costs
0.2-0.5 s against ~0.1 ms for a step, so results are cached by jericho's world-state
hash (an LRU shared by the rows of a batch); cache misses of a batch are computed
concurrently in threads (frotz releases the GIL), one per distinct state. The cache is
used only at the game's main prompt: while the parser waits for an answer ("What do you
want to read?") the world hash is unchanged but the valid actions are not.

Word extraction without spaCy's model. jericho finds candidate object words with
spaCy's `en_core_web_sm` (and, if the model is missing, tries to download it). Where
that model loads (`spacy.load("en_core_web_sm")`) it is used, as in the reference.
Otherwise a regex extractor takes every alphabetic word of the room and inventory texts
as a noun; jericho then keeps only the words the game's dictionary knows and whose
`examine` the parser accepts, which is what makes the crude extractor enough (along the
walkthrough it gave the same valid-action sets as spaCy on 49 of 50 states; the one
difference was "put each down" for "put all down"). jericho itself is never patched:
each of our interpreters gets its own copy of jericho's
`FrotzEnv._identify_interactive_objects` whose `utl` (jericho.util) global is a view
with `extract_objs` replaced; other users of jericho in the process see no change.
jericho never downloads anything from here. Which extractor a batch uses is recorded in
`BatchedDetective.word_extractor`.

Determinism: the game is deterministic given its Z-machine state, which includes the
random number generator (seeded by jericho's binding for the game and saved with the
state); every reset restores one saved initial state, as the reference does. jericho
picks one action name per group of equivalent actions through set iteration, so in rare
ties the *names* in a valid-action list may depend on PYTHONHASHSEED; the order never
does (sorted).
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import hashlib
import importlib.util
import os
import re
import threading
import types
from collections.abc import Iterator, Mapping
from typing import Any, NamedTuple, Sequence

import numpy as np

from archer_jax.envs import base

MAX_STEPS = 50
MAX_SCORE = 360  # the game's maximum; it starts at 10
# jericho's binding for the game (the same file as the reference's dataset/detective.z5).
DETECTIVE_MD5 = "822655c9be83e292e06d3d3b1d6a9734"
GAME_SOURCE = ("get detective.z5 from the Jericho game suite "
               "(https://github.com/BYU-PCCL/z-machine-games, folder jericho-game-suite/) "
               f"or the ArCHer repository (dataset/detective.z5); md5 {DETECTIVE_MD5}")
INSTALL_HINT = "pip install -e '.[detective]' (jericho builds C code: needs gcc and make)"
SPACY_MODEL = "en_core_web_sm"
WORD_EXTRACTORS = ("auto", "spacy", "regex")
# frotz reads at most 200 bytes per command, newline and terminator included; jericho warns
# on every longer command, so they are cut here instead (an LM can emit long garbage).
MAX_ACTION_BYTES = 198
VALID_ACTIONS_CACHE_SIZE = 65536
# The Inform library's verbs that read or write files (dictionary words: 9 letters at most).
FILE_VERBS = frozenset({"save", "restore", "script", "transcrip", "noscript", "unscript", "recording", "replay"})
FILE_COMMAND_RESPONSE = "[Saving, restoring, transcripts and recordings are turned off in this environment.]"

LABELS = ("Surroundings: ", "Inventory: ", "Last response: ", "Step: ", "Valid actions: ")
ACTION_SEPARATOR = ", "


class GameFileError(FileNotFoundError, ValueError):
    """The game file is missing, unreadable, or not a game jericho supports."""


class ObservationParts(NamedTuple):
    surroundings: str
    inventory: str
    response: str
    step: int  # steps taken since reset
    max_steps: int
    valid_actions: tuple[str, ...] | None  # None: the observation does not show them


def clean_action(action: str) -> str:
    """The command an action sends: its first line, stripped.

    As in the reference, a leading newline makes an empty command (the game answers
    "I beg your pardon?"): generation stops at the first newline, so the text after it
    was never meant as this turn's command.
    """
    lines = action.splitlines()
    command = lines[0].strip() if lines else ""
    encoded = command.encode("utf-8")
    if len(encoded) > MAX_ACTION_BYTES:
        command = encoded[:MAX_ACTION_BYTES].decode("utf-8", errors="ignore")
    return command


def touches_files(command: str) -> bool:
    """Whether the game would read or write a file for this command (module docstring)."""
    return any(word[:9] in FILE_VERBS for word in re.findall(r"[a-z]+", command.lower()))


def _one_line(text: str) -> str:
    return " ".join(text.split())


def format_observation(surroundings: str, inventory: str, response: str, step: int, max_steps: int,
                       valid_actions: Sequence[str] | None) -> str:
    """The labelled lines an observation is made of (module docstring).

    `valid_actions=None` leaves out the last line (`show_valid_actions=False`).
    """
    parts = [_one_line(surroundings), _one_line(inventory), _one_line(response), f"{step} of {max_steps}"]
    if valid_actions is not None:
        parts.append(ACTION_SEPARATOR.join(valid_actions))
    return "\n".join(label + part for label, part in zip(LABELS, parts))


_STEP = re.compile(r"(\d+) of (\d+)")


def parse_observation(observation: str) -> ObservationParts:
    """Inverse of `format_observation` (the texts come back with whitespace collapsed)."""
    lines = observation.split("\n")
    parts = [line[len(label):] for line, label in zip(lines, LABELS)]
    step = _STEP.fullmatch(parts[3]) if len(parts) > 3 else None
    if len(lines) not in (4, 5) or not all(line.startswith(label) for line, label in zip(lines, LABELS)) or not step:
        raise ValueError(f"not a Detective observation (expected lines starting {list(LABELS)}): {observation[:80]!r}")
    actions = None if len(parts) == 4 else tuple(parts[4].split(ACTION_SEPARATOR)) if parts[4] else ()
    return ObservationParts(parts[0], parts[1], parts[2], int(step[1]), int(step[2]), actions)


def regex_objects(text: str) -> set[tuple[str, str]]:
    """Every alphabetic word of `text` as a candidate noun, in `jericho.util.extract_objs`' format."""
    return {(word.lower(), "NOUN") for word in re.findall(r"[A-Za-z]+", text)}


def _import_jericho():
    try:
        import jericho
        import jericho.defines
        import jericho.util
    except ImportError as error:
        raise ImportError(f"the Detective environment needs jericho (the Z-machine interpreter): "
                          f"{INSTALL_HINT}") from error
    return jericho


def _jericho_util():
    """The module `jericho.util`, from sys.modules.

    Not the attribute `jericho.util`, nor `import jericho.util as ...` (which reads that
    attribute first): jericho's `__init__` star-imports `jericho.jericho`, which
    star-imports `ctypes`, so once anything has imported `ctypes.util` (torch does) the
    package attribute `jericho.util` is `ctypes.util`.
    """
    _import_jericho()
    return importlib.import_module("jericho.util")


def _check_game_file(game_path) -> tuple[str, str]:
    """(path, md5) of a local, readable game file jericho has bindings for (walkthrough, templates)."""
    path = os.fspath(game_path)
    if not os.path.isfile(path):
        raise GameFileError(f"game file not found: {path!r}; {GAME_SOURCE}")
    try:
        with open(path, "rb") as f:
            rom = f.read()
    except OSError as error:
        raise GameFileError(f"cannot read game file {path!r} ({error}); {GAME_SOURCE}") from error
    jericho = _import_jericho()
    md5 = hashlib.md5(rom).hexdigest()
    # Checked before frotz sees the bytes: the interpreter is C and does not validate them.
    if md5 not in jericho.defines.BINDINGS_DICT:
        raise GameFileError(f"{path!r} is not a game jericho supports (md5 {md5}); {GAME_SOURCE}")
    return path, md5


# --- word extraction ---------------------------------------------------------------------

_EXTRACTOR_LOCK = threading.Lock()
_SPACY_LOCK = threading.Lock()  # one spaCy pipeline, called from the valid-action threads
_spacy_state: dict[str, bool] = {}


def _spacy_model_loads() -> bool:
    """Whether jericho can extract words with spaCy's model without downloading anything.

    Loads the model into `jericho.util.spacy_nlp`, where jericho's own lazy loader would put
    it, so that jericho never reaches its download fallback. A pipeline someone already
    stored there counts only if it tags parts of speech (`spacy.blank("en")` does not: with
    it jericho's extractor finds no words at all).
    """
    with _EXTRACTOR_LOCK:
        if "ok" not in _spacy_state:
            ju = _jericho_util()
            nlp = vars(ju).get("spacy_nlp")
            if nlp is None and importlib.util.find_spec(SPACY_MODEL) is not None:
                try:
                    import spacy
                    nlp = spacy.load(SPACY_MODEL)
                except (ImportError, OSError, ValueError):
                    nlp = None
                if nlp is not None:
                    ju.spacy_nlp = nlp
            pipes = getattr(nlp, "pipe_names", ())
            _spacy_state["ok"] = "tagger" in pipes or "morphologizer" in pipes
        return _spacy_state["ok"]


def _spacy_objects(text: str) -> set[tuple[str, str]]:
    ju = _jericho_util()
    with _SPACY_LOCK:
        return ju.extract_objs(text)


def _resolve_word_extractor(choice: str) -> str:
    if choice not in WORD_EXTRACTORS:
        raise ValueError(f"word_extractor must be one of {WORD_EXTRACTORS}, got {choice!r}")
    if choice == "regex":
        return "regex"
    if _spacy_model_loads():
        return "spacy"
    if choice == "spacy":
        raise ImportError(f"word_extractor='spacy' needs spaCy's {SPACY_MODEL} model, which did not load "
                          f"(it is not on PyPI: `python -m spacy download {SPACY_MODEL}` where GitHub is "
                          "reachable); word_extractor='auto' falls back to the regex extractor")
    return "regex"


def _identify_objects_with(jericho, extract_objs):
    """jericho's `FrotzEnv._identify_interactive_objects`, its `utl.extract_objs` replaced.

    The same code object run with a copy of jericho's module globals in which `utl` is a
    view of `jericho.util` overriding one name: no module or class is modified.
    """
    method = jericho.FrotzEnv._identify_interactive_objects
    code = method.__code__
    if "utl" not in code.co_names or "extract_objs" not in code.co_names:
        raise RuntimeError(f"jericho {getattr(jericho, '__version__', '?')} no longer finds object words "
                           "through utl.extract_objs; this module supports jericho 3.x")
    util_view = types.SimpleNamespace(**vars(_jericho_util()))
    util_view.extract_objs = extract_objs
    module_globals = dict(vars(jericho.jericho), utl=util_view)
    function = types.FunctionType(code, module_globals, method.__name__, method.__defaults__, method.__closure__)
    function.__kwdefaults__ = method.__kwdefaults__
    return function


# --- environments ------------------------------------------------------------------------


def walkthrough(game_path) -> list[str]:
    """jericho's walkthrough for the game: the commands that win it (51 for Detective).

    The walkthrough includes commands that score nothing (READ PAPER, DROP PAPER,
    INVENTORY, two bumps into walls), so it wins in 51 steps but does not fit the 50-step
    cap as is; it collects all 350 points in its first 50 steps.
    """
    _, md5 = _check_game_file(game_path)
    return walkthrough_of(md5)


def walkthrough_of(md5: str = DETECTIVE_MD5) -> list[str]:
    """jericho's walkthrough of the game with this md5 (its bindings: no game file read)."""
    return _import_jericho().defines.BINDINGS_DICT[md5]["walkthrough"].split("/")


class BatchedDetective:
    """`batch_size` Detective games stepped together, one jericho interpreter per row.

    reset(seeds) -> observations; step(actions) -> (observations, rewards float32 [B],
    dones bool [B]). Per row: `successes` (won), `scores` (game score, 10 at reset),
    `steps` (steps since reset), `valid_actions`, `moves` (the game's turn counter, which
    unparsed commands do not advance). `word_extractor` is "spacy" or "regex" (module
    docstring); `valid_action_calls` counts the jericho calls the cache did not save.

    Args:
      game_path: local path of detective.z5 (frotz reads it by name).
      batch_size: rows.
      max_steps: turn cap; every step counts.
      word_extractor: "auto" (spaCy's model when it loads, else regex), "spacy" or "regex".
      num_threads: threads computing valid actions of different states at once (frotz
        releases the GIL); default min(batch_size, CPUs).
      show_valid_actions: False leaves the valid actions out of the observation and never
        computes them (each step then costs ~1 ms instead of up to 0.5 s per new state):
        for scripted players and tests. The reference always shows them.
    """

    def __init__(self, game_path, batch_size: int, max_steps: int = MAX_STEPS,
                 word_extractor: str = "auto", num_threads: int | None = None,
                 show_valid_actions: bool = True):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if max_steps < 1:
            raise ValueError(f"max_steps must be >= 1, got {max_steps}")
        if num_threads is not None and num_threads < 1:
            raise ValueError(f"num_threads must be >= 1, got {num_threads}")
        self.game_path, _ = _check_game_file(game_path)
        jericho = _import_jericho()
        self.word_extractor = _resolve_word_extractor(word_extractor)
        identify = _identify_objects_with(jericho, regex_objects if self.word_extractor == "regex" else _spacy_objects)
        self.batch_size = batch_size
        self.max_steps = max_steps
        self.show_valid_actions = show_valid_actions
        self.num_threads = min(batch_size, os.cpu_count() or 1) if num_threads is None else num_threads
        self._envs = []
        for _ in range(batch_size):
            env = jericho.FrotzEnv(self.game_path)
            if not env.is_fully_supported:
                raise GameFileError(f"jericho cannot track score and moves of {self.game_path!r}; {GAME_SOURCE}")
            env._identify_interactive_objects = types.MethodType(identify, env)
            self._envs.append(env)
        # The reference resets one interpreter and restores every row to that saved state.
        self._initial_response, info = self._envs[0].reset()
        self._initial_state = self._envs[0].get_state()
        self.initial_score = int(info["score"])
        # (sp, fp, frame count) at the main prompt; a parser question runs deeper.
        self._prompt_frame = self._initial_state[3:6]
        self._initial_observation: str | None = None
        self._initial_valid_actions: list[str] = []
        self._cache: collections.OrderedDict[str, list[str]] = collections.OrderedDict()
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self.valid_action_calls = 0
        self.valid_action_cache_hits = 0
        self._started = False
        self.dones = np.ones(batch_size, dtype=bool)
        self.successes = np.zeros(batch_size, dtype=bool)
        self.scores = np.full(batch_size, self.initial_score, dtype=np.int32)
        self.steps = np.zeros(batch_size, dtype=np.int32)
        self.valid_actions: list[list[str]] = [[] for _ in range(batch_size)]
        self._observations: list[str] = [""] * batch_size

    def reset(self, seeds: Sequence[int]) -> list[str]:
        """Restores every row to the game's initial state.

        `seeds` is the batched-environment protocol's argument (its length is checked) and
        is otherwise unused: every row restarts from one saved state, the interpreter's
        random number generator included, as in the reference, so an episode's course
        depends on its commands only.
        """
        self._check_len("seeds", seeds)
        for env in self._envs:
            env.set_state(self._initial_state)
        if self._initial_observation is None:
            if self.show_valid_actions:
                self._initial_valid_actions = self._compute_valid_actions([0])[0]
            self._initial_observation = self._observe(0, self._initial_response, self._initial_valid_actions)
        self.dones = np.zeros(self.batch_size, dtype=bool)
        self.successes = np.zeros(self.batch_size, dtype=bool)
        self.scores = np.full(self.batch_size, self.initial_score, dtype=np.int32)
        self.steps = np.zeros(self.batch_size, dtype=np.int32)
        self.valid_actions = [list(self._initial_valid_actions) for _ in range(self.batch_size)]
        self._observations = [self._initial_observation] * self.batch_size
        self._started = True
        return list(self._observations)

    def step(self, actions: Sequence[str]) -> tuple[list[str], np.ndarray, np.ndarray]:
        """One command for every unfinished row. Returns (observations, rewards, dones)."""
        if not self._started:
            raise RuntimeError("call reset() before step()")
        self._check_len("actions", actions)
        rewards = np.zeros(self.batch_size, dtype=np.float32)
        active = [i for i in range(self.batch_size) if not self.dones[i]]
        responses = {}
        for i in active:
            env = self._envs[i]
            command = clean_action(actions[i])
            self.steps[i] += 1
            if touches_files(command):
                responses[i], game_over = FILE_COMMAND_RESPONSE, False
            else:
                responses[i], reward, game_over, info = env.step(command)
                rewards[i] = reward
                self.scores[i] = info["score"]
            self.successes[i] = env.victory()
            self.dones[i] = game_over or self.steps[i] >= self.max_steps
        playing = [i for i in active if not (self._envs[i].victory() or self._envs[i].game_over())]
        valid = dict(zip(playing, self._compute_valid_actions(playing))) if self.show_valid_actions else {}
        for i in active:
            self.valid_actions[i] = valid.get(i, [])
            self._observations[i] = self._observe(i, responses[i], self.valid_actions[i])
        return list(self._observations), rewards, self.dones.copy()

    @property
    def observations(self) -> list[str]:
        return list(self._observations)

    @property
    def max_turns(self) -> int:
        """The turn cap (`envs.base.BatchedEnv`): `max_steps`."""
        return self.max_steps

    # A step scores at most what the game still holds; a RESTART takes back what was scored.
    reward_range = (-float(MAX_SCORE - 10), float(MAX_SCORE - 10))

    @property
    def hidden(self) -> list[str]:
        """What each episode is about (`envs.base.BatchedEnv`): one game, always the same."""
        return ["detective"] * self.batch_size

    @property
    def moves(self) -> np.ndarray:
        """The game's own turn counter per row (1 at reset; unparsed commands do not count)."""
        return np.array([env.get_moves() for env in self._envs], dtype=np.int32)

    def walkthrough(self) -> list[str]:
        """jericho's walkthrough for the game (see the module-level `walkthrough`)."""
        return self._envs[0].get_walkthrough()

    def close(self) -> None:
        """Stops the valid-action threads (the interpreters are freed with the object)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def _observe(self, i: int, response: str, valid_actions: Sequence[str]) -> str:
        env = self._envs[i]
        state = env.get_state()
        surroundings = env.step("look")[0]
        env.set_state(state)
        inventory = env.step("inventory")[0]
        env.set_state(state)
        return format_observation(surroundings, inventory, response, int(self.steps[i]), self.max_steps,
                                  valid_actions if self.show_valid_actions else None)

    def _cache_key(self, i: int) -> str | None:
        """jericho's world-state hash, at the main prompt only (module docstring)."""
        env = self._envs[i]
        if tuple(env.get_state()[3:6]) != tuple(self._prompt_frame):
            return None
        return env.get_world_state_hash()

    def _compute_valid_actions(self, rows: Sequence[int]) -> list[list[str]]:
        """Sorted valid actions of each row; one jericho call per distinct uncached state."""
        # Cache key per row, or ("row", i) where the state is not cacheable.
        keys = {i: self._cache_key(i) or ("row", i) for i in rows}
        todo: dict[object, int] = {}  # key -> the row that computes it
        for i in rows:
            key = keys[i]
            if key in self._cache:
                self._cache.move_to_end(key)
                self.valid_action_cache_hits += 1
            elif key not in todo:
                todo[key] = i
            else:
                self.valid_action_cache_hits += 1
        computed = dict(zip(todo, self._map(self._jericho_valid_actions, list(todo.values()))))
        self.valid_action_calls += len(todo)
        for key, actions in computed.items():
            if not isinstance(key, tuple):
                self._cache[key] = actions
                while len(self._cache) > VALID_ACTIONS_CACHE_SIZE:
                    self._cache.popitem(last=False)
        return [list(computed[keys[i]] if keys[i] in computed else self._cache[keys[i]]) for i in rows]

    def _jericho_valid_actions(self, i: int) -> list[str]:
        # use_parallel=False: jericho's default forks a process pool per interpreter, unsafe
        # in a process running JAX; threads over rows parallelise instead.
        return sorted(self._envs[i].get_valid_actions(use_parallel=False))

    def _map(self, fn, rows: list[int]) -> list:
        if self.num_threads == 1 or len(rows) < 2:
            return [fn(i) for i in rows]
        if self._pool is None:
            self._pool = concurrent.futures.ThreadPoolExecutor(self.num_threads, thread_name_prefix="detective")
        return list(self._pool.map(fn, rows))

    def _check_len(self, what: str, values: Sequence) -> None:
        if len(values) != self.batch_size:
            raise ValueError(f"{what} has {len(values)} entries, batch_size is {self.batch_size}")


class DetectiveEnv:
    """One game: `reset(seed) -> observation`, `step(action) -> (observation, reward, done)`."""

    def __init__(self, game_path, max_steps: int = MAX_STEPS, word_extractor: str = "auto",
                 show_valid_actions: bool = True):
        self._batch = BatchedDetective(game_path, 1, max_steps=max_steps, word_extractor=word_extractor,
                                       num_threads=1, show_valid_actions=show_valid_actions)

    def reset(self, seed: int = 0) -> str:
        return self._batch.reset([seed])[0]

    def step(self, action: str) -> tuple[str, float, bool]:
        observations, rewards, dones = self._batch.step([action])
        return observations[0], float(rewards[0]), bool(dones[0])

    @property
    def success(self) -> bool:
        return bool(self._batch.successes[0])

    @property
    def score(self) -> int:
        return int(self._batch.scores[0])

    @property
    def valid_actions(self) -> list[str]:
        return list(self._batch.valid_actions[0])

    def walkthrough(self) -> list[str]:
        return self._batch.walkthrough()


# --- the task object ----------------------------------------------------------------------

# config.env fields Detective reads beside max_turns (the step cap).
ENV_DEFAULTS = {"game_file": "", "show_valid_actions": True, "word_extractor": "auto"}


@dataclasses.dataclass(frozen=True)
class Detective:
    """The task object (`envs.base.Task`) of Detective; its instance, with the scripted
    players, is `detective_players.TASKS`.

    ``config.env`` fields: ``game_file`` (the path of detective.z5), ``max_turns`` (the
    step cap, 50 in the paper), ``show_valid_actions`` (the reference shows them; False
    makes a step ~1 ms instead of up to 0.5 s per new state) and ``word_extractor``
    (`BatchedDetective`).
    """

    players: Mapping[str, base.Player]
    default_mix: Mapping[str, float]
    name: str = "detective"
    informative: str | None = "walkthrough"
    oracle_format: Any = None  # no oracle: the game itself answers
    lmrl_gym: str | None = None
    corpus_episodes: int = 8  # episodes of the default mix whose texts seed a word tokenizer

    def make_env(self, env_config: Mapping[str, Any], batch_size: int, oracle: Any = None) -> BatchedDetective:
        if oracle is not None:
            raise ValueError("config.env.oracle: Detective has no oracle (the game answers); use 'kb'")
        env = {**ENV_DEFAULTS, **{k: env_config[k] for k in ENV_DEFAULTS if k in env_config}}
        if not env["game_file"]:
            raise GameFileError(f"config.env.game_file is empty: set it to the path of detective.z5 ({GAME_SOURCE})")
        try:
            return BatchedDetective(env["game_file"], batch_size, max_steps=int(env_config.get("max_turns", MAX_STEPS)),
                                    word_extractor=env["word_extractor"],
                                    show_valid_actions=bool(env["show_valid_actions"]))
        except GameFileError as error:
            raise GameFileError(f"config.env.game_file: {error}") from error

    def corpus(self, env_config: Mapping[str, Any]) -> Iterator[str]:
        """The observations and commands of a few episodes of the scripted players (the
        walkthrough's included): the game's texts a word tokenizer needs."""
        for episode in base.simulate_episodes(self, env_config, self.default_mix, self.corpus_episodes, seed=0):
            yield from episode["observations"]
            yield from episode["actions"]

    def one_turn_observation(self, env_config: Mapping[str, Any]) -> str:
        """The observation at reset (every observation is one whole turn)."""
        env = self.make_env(env_config, 1)
        try:
            return env.reset([0])[0]
        finally:
            env.close()
