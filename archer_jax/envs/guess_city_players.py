"""Scripted Guess My City players of mixed quality (strategies from `scripted`).

Their probes read the oracle's answers back with the same finders the KB oracle
writes with (`guess_city.*_in`).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable

from archer_jax.envs import guess_city as gc
from archer_jax.envs import scripted
from archer_jax.envs.question_game import QuestionGame
from archer_jax.envs.scripted import Probe, read_yes_no


def _read_set(finder: Callable[[str], list[str]]) -> Callable[[str], frozenset | None]:
    return lambda answer: frozenset(finder(answer)) or None


def _read_one(finder: Callable[[str], list[str]]) -> Callable[[str], str | None]:
    def read(answer: str) -> str | None:
        found = finder(answer)
        return found[0] if len(found) == 1 else None
    return read


def _yes_no_probe(question: str, feature: Callable[[gc.City], Hashable]) -> Probe:
    return Probe(question, feature, read_yes_no)


def _country_question(country: str) -> str:
    return f"Is the city in {gc.country_phrase(country)}?"


def _build_probes() -> tuple[Probe, ...]:
    probes = [
        Probe("Which continent is the city in?", lambda c: frozenset(c.continents), _read_set(gc.continents_in)),
        Probe("What country is the city in?", lambda c: c.country, _read_one(gc.countries_in)),
        Probe("What language do people speak there?", lambda c: frozenset(c.languages),
              _read_set(gc.languages_in)),
        Probe("What is the climate like?", lambda c: c.climate, gc.climate_in),
        Probe("How many people live there?", lambda c: c.population, gc.population_in),
        _yes_no_probe("Is the city on the coast?", lambda c: c.coastal),
        _yes_no_probe("Is the city a capital?", lambda c: c.capital),
        _yes_no_probe("Is the city in the Southern Hemisphere?", lambda c: c.southern),
    ]
    probes += [_yes_no_probe(f"Is the city in {cont}?", lambda c, cont=cont: cont in c.continents)
               for cont in gc.CONTINENTS]
    probes += [_yes_no_probe(_country_question(country), lambda c, country=country: c.country == country)
               for country in gc.COUNTRIES]
    return tuple(probes)


PROBES: tuple[Probe, ...] = _build_probes()
# Asked by the noisy player; their answers are not used to narrow the candidates.
SMALL_TALK: tuple[str, ...] = (
    "What is a famous landmark there?",
    "What food is the city famous for?",
    "What sports are popular there?",
    "What currency do people use there?",
)


def guess_question(city: str) -> str:
    return f"Is the city {city}?"


def question_pool() -> list[str]:
    """Every question a scripted player can ask: the template set."""
    return [p.question for p in PROBES] + list(SMALL_TALK) + [guess_question(n) for n in gc.CITY_NAMES]


TABLE = scripted.ProbeTable(gc.CITIES, PROBES, [guess_question(n) for n in gc.CITY_NAMES])

# The informative player asks the continent first, then picks among these the question
# that best splits the cities still possible. Country, language and population
# questions are left out on purpose: they would pin most cities at once, and finding
# that shortcut is left to RL (the questions do occur in the data, asked by `noisy`).
_CONTINENT_QUESTION = "Which continent is the city in?"
_NARROWING = [p.question for p in PROBES
              if p.question in {"Is the city on the coast?", "Is the city a capital?",
                                "Is the city in the Southern Hemisphere?", "What is the climate like?"}
              or p.question in {_country_question(c) for c in gc.COUNTRIES}]

# Continent first, then the best-splitting yes/no or climate question; guesses at <= 2
# left. Wins every game against the KB oracle, in about 5 turns on average (11 at worst).
informative = scripted.best_split(TABLE, _NARROWING, opening=_CONTINENT_QUESTION)

QUESTIONERS: dict[str, scripted.Questioner] = {
    "informative": informative,
    "redundant": scripted.repeating(informative),
    # Half of its questions name a country (the group is listed twice).
    "noisy": scripted.random_questions(TABLE, (
        [p.question for p in PROBES[:8]] + list(SMALL_TALK),
        [f"Is the city in {cont}?" for cont in gc.CONTINENTS],
        [_country_question(country) for country in gc.COUNTRIES],
        [_country_question(country) for country in gc.COUNTRIES],
    )),
    # Asks for the continent, then guesses cities there, forgetting which it already tried.
    "early_guesser": scripted.early_guessing(informative, TABLE, questions=1),
}
# Clearly imperfect on purpose (measured on 10,000 episodes: about 57% wins and mean
# return -12, against 100% and -4.1 for `informative`), so RL has room above imitation.
DEFAULT_MIX: dict[str, float] = {"informative": 0.25, "redundant": 0.15, "noisy": 0.35, "early_guesser": 0.25}

# The task object (envs.base.Task).
TASKS = (QuestionGame("guess_city", gc.guess_city_task, QUESTIONERS, DEFAULT_MIX, question_pool, TABLE,
                      oracle_format=gc.LM_ORACLE_FORMAT, lmrl_gym="Guess My City"),)
