"""Guess My City: KB oracle facts and phrasing, win detection, game semantics, batching."""

import numpy as np
import pytest

from archer_jax.envs import guess_city as gc
from archer_jax.envs.question_game import (
    MAX_TURNS,
    WIN_ANSWER,
    BatchedQuestionGame,
    OracleError,
    QuestionGameEnv,
    clean_question,
    format_observation,
    parse_observation,
)

ORACLE = gc.CityOracle()

# (hidden city, question, exact answer): facts a player could check in an atlas.
FACTS = [
    ("Tokyo", "What country is the city in?", "The city is in Japan."),
    ("Cairo", "Which continent is the city in?", "The city is in Africa."),
    ("Istanbul", "Is it in Asia?", "Yes, the city lies in both Europe and Asia."),
    ("Lagos", "Is it in South America?", "No, the city is not in South America."),
    ("Johannesburg", "Is the city in South Africa?", "Yes, the city is in South Africa."),
    ("Nairobi", "Is the city in South Africa?", "No, the city is not in South Africa."),
    ("Seattle", "Is the city in America?", "Yes, the city is in the United States."),
    ("Seoul", "Is the city in the USA?", "No, the city is not in the United States."),
    ("Amsterdam", "Is the city in Holland?", "Yes, the city is in the Netherlands."),
    ("Paris", "Is the city on the coast?", "No, the city is not on the coast. It lies on the Seine river."),
    ("Lima", "Is it near the ocean?", "Yes, the city is on the coast. It lies on the Pacific coast."),
    ("Zurich", "Is the city landlocked?",
     "Yes, the city is not on the coast. It lies at the northern end of a large lake."),
    ("Buenos Aires", "Is it a capital?", "Yes, it is the capital of its country."),
    ("Sydney", "Is the city a capital?", "No, it is not the capital of its country."),
    ("Lagos", "Is it the capital?", "No, it was the capital until 1991, but it is still the country's largest city."),
    ("Montreal", "What language do people speak there?", "People there mostly speak French and English."),
    ("Mexico City", "Do people speak Spanish there?", "Yes, people there speak Spanish."),
    ("Berlin", "Do people speak French there?",
     "No, French is not a main language there. People there mostly speak German."),
    ("Hong Kong", "Do they speak Chinese?", "Yes, people there speak Cantonese."),
    ("Tehran", "Is Farsi spoken there?", "Yes, people there speak Persian."),
    ("Lima", "What is the climate like?", "The city has mild, dry weather and almost no rain."),
    ("Moscow", "Is it cold in winter?", "The city has warm summers and cold winters with some snow."),
    ("Cape Town", "Is it in the Southern Hemisphere?", "Yes, the city is in the Southern Hemisphere."),
    ("London", "Is the city south of the equator?", "No, the city is in the Northern Hemisphere."),
    ("Quito", "Which hemisphere is it in?", "The city is in the Southern Hemisphere."),
    ("Dubai", "What currency do they use?", "People there pay with the UAE dirham."),
    ("Quito", "What money do people pay with?", "People there pay with the US dollar."),
    ("Tokyo", "How many people live there?", "More than 35 million people live in and around the city."),
    ("Mumbai", "What sports are popular there?", "Popular sports there include cricket."),
    ("Chicago", "What state is it in?", "The city is in Illinois."),
    ("Houston", "Is the city in Texas?", "Yes, the city is in Texas."),
    ("Boston", "Is the city in California?", "No, the city is not in California."),
    ("Seattle", "Is the city in Washington State?", "Yes, the city is in Washington State."),
    ("Edinburgh", "Is the city in England?", "No, the city is not in England."),
    ("London", "Is it in England?", "Yes, the city is in England."),
    ("Athens", "What food is the city famous for?", "Famous local food includes souvlaki, moussaka and gyros."),
    ("Sydney", "What is a famous landmark?",
     "Famous landmarks there include the Opera House, the Harbour Bridge, Bondi Beach and The Rocks."),
]


# Questions whose proposition names a place inside other words, in an LM questioner's
# phrasing: the oracle answers the proposition, not the nearest keyword (it once said
# "Yes, the city is in Australia." to the first).
FACTS += [
    ("Sydney", "Is your city the capital of Australia?", "No, it is not the capital of its country."),
    ("Mexico City", "Is your city located near the Gulf of Mexico?",
     "No, the city is not on the coast. It lies in a high valley, about 2,240 meters above sea level."),
    ("Houston", "Is it near the Gulf of Mexico?", "Yes, the city lies on or near the Gulf of Mexico."),
    ("Bogotá", "Is your city located in the Andes mountain range?", "Yes, the city lies in or beside the Andes."),
    ("Buenos Aires", "Is it in the Andes?", "No, the city is not in or near the Andes."),
    ("Zurich", "Is the city in the Alps?", "No, the city is not in the Alps, but it lies near them."),
    ("Zurich", "Is it near the Alps?", "Yes, the city lies near the Alps."),
    ("Bangkok", "Is it in Southeast Asia?", "Yes, the city is in Southeast Asia."),
    ("Tokyo", "Is the city in Southeast Asia?", "No, the city is not in Southeast Asia."),
    ("Prague", "Is it in Eastern Europe?",
     "It depends on what is meant by Eastern Europe; the city is in the Czech Republic."),
    ("Boston", "Is it on the East Coast?", "Yes, the city is on the East Coast."),
    ("Shanghai", "Is it on the East Coast?", "It depends on what is meant by the East Coast; the city is in China."),
    ("Paris", "Does the Danube flow through the city?", "No, the city lies on the Seine."),
    ("Budapest", "Is it on the Danube?", "Yes, the city lies on or near the Danube."),
    ("Edinburgh", "Is it the capital of Scotland?", "Yes, it is the capital of Scotland."),
    ("Houston", "Is it the capital of Texas?", "No, it is not the capital of Texas."),
    ("Montreal", "Is it the capital of Ontario?", "No, the city is not in Ontario."),
    ("Boston", "Is it a state capital?", "Yes, it is the capital of Massachusetts."),
    ("Paris", "Is it a European capital?", "Yes, it is a capital in Europe."),
    ("Cairo", "Is it a European capital?", "No, the city is not in Europe."),
    ("Lima", "Is it the largest city in the country?", "Yes, it is the largest city in its country."),
    ("Osaka", "Is it the biggest city in Japan?", "No, it is not the largest city in its country."),
    ("Tokyo", "Does it have more than 10 million people?",
     "Yes, more than 35 million people live in and around the city."),
    ("Quito", "Is it close to the equator?", "Yes, the city lies close to the equator."),
    ("Moscow", "Is it near the equator?",
     "No, the city lies far from the equator; the city is in the Northern Hemisphere."),
    ("Lima", "Is the city in the Western Hemisphere?", "Yes, the city is in the Western Hemisphere."),
    ("London", "Is it in the Eastern Hemisphere?",
     "The city lies close to the prime meridian, between the Eastern and Western Hemispheres."),
    ("Rio de Janeiro", "Is it in the tropics?", "Yes, the city lies in the tropics."),
    ("Mexico City", "Is it at a high altitude?",
     "Yes, the city lies high above sea level. It lies in a high valley, about 2,240 meters above sea level."),
    ("Milan", "Is it the fashion capital of Italy?",
     "I can't say whether people call it that. No, it is not the capital of its country."),
]


@pytest.mark.parametrize("city,question,expected", FACTS)
def test_oracle_facts(city, question, expected):
    assert ORACLE.answer([city], [question]) == [expected]


def test_filters_items_that_contain_the_name():
    # "Peking duck" names Beijing (alias Peking); AS Roma names Rome (alias Roma).
    assert ORACLE.answer(["Beijing"], ["What food is it famous for?"]) == [
        "Famous local food includes jiaozi dumplings and zhajiangmian noodles."]
    assert ORACLE.answer(["Rome"], ["What sports are popular?"]) == [
        "Popular sports there include football (soccer). Well-known local teams include Lazio."]
    assert "Washington" not in ORACLE.answer(["Washington, D.C."], ["What is a famous landmark?"])[0]


def test_refuses_answers_that_would_name_the_city():
    assert ORACLE.answer(["Singapore"], ["What country is the city in?"]) == [gc.CANT_ANSWER]
    assert ORACLE.answer(["New York City"], ["What state is it in?"]) == [gc.CANT_ANSWER]
    assert ORACLE.answer(["Hong Kong"], ["What currency do they use?"]) == [gc.CANT_ANSWER]


@pytest.mark.parametrize("question", ["What is the name of the city?", "What city is it?",
                                      "Which city are you thinking of?", "What is the city called?",
                                      "Tell me the city's name."])
def test_name_requests_are_refused(question):
    assert ORACLE.answer(["Paris"], [question]) == [gc.CANT_ANSWER]


def test_naming_a_landmark_is_not_a_name_request():
    assert ORACLE.answer(["Paris"], ["Can you name a famous landmark?"])[0].startswith("Famous landmarks")


@pytest.mark.parametrize("question", ["Why?", "asdfgh", "", "Tell me a joke."])
def test_fallback(question):
    assert ORACLE.answer(["Cairo"], [question]) == [gc.FALLBACK_ANSWER]


def test_other_city_guesses():
    assert ORACLE.answer(["Paris"], ["Is the city Tokyo?"]) == ["No, the city is not Tokyo."]
    assert ORACLE.answer(["Paris"], ["Is it Paris or London?"]) == [gc.ONE_CITY_ONLY]


BASIC_QUESTIONS = ["Which continent is the city in?", "Is the city on the coast?", "Is the city a capital?",
                   "What language do people speak there?", "What is the climate like?",
                   "How many people live there?", "What is a famous landmark there?",
                   "What food is the city famous for?", "What sports are popular there?",
                   "Is the city in the Southern Hemisphere?", "What currency do people use there?",
                   "What state is the city in?", "What country is the city in?", "Is the city in Europe?"]


def test_no_answer_ever_names_its_city_and_basic_questions_are_answered():
    for city in gc.CITIES:
        answers = ORACLE.answer([city.name] * len(BASIC_QUESTIONS), BASIC_QUESTIONS)
        for question, answer in zip(BASIC_QUESTIONS, answers):
            assert not gc.names_city(answer, city), (city.name, question, answer)
            assert answer != gc.FALLBACK_ANSWER, (city.name, question)
        # The facts themselves never need refusing; only country, state and currency may
        # coincide with the name (Singapore, New York, Hong Kong dollar).
        assert gc.CANT_ANSWER not in answers[:10], (city.name, answers)


def test_table_is_consistent():
    assert 95 <= len(gc.CITIES) <= 105
    assert {c for city in gc.CITIES for c in city.continents} == set(gc.CONTINENTS)
    aliases = [gc.normalize(name) for city in gc.CITIES for name in city.names]
    assert len(aliases) == len(set(aliases)), "an alias names two cities"
    for city in gc.CITIES:
        assert len(city.landmarks) >= 2 and city.dishes and city.sports, city.name
        if city.capital_note:
            assert city.capital_note.startswith("Yes" if city.capital else "No"), city.name


def test_geography_covers_every_city_and_agrees_with_the_table():
    assert set(gc.GEOGRAPHY) == set(gc.CITY_NAMES)
    for name, geo in gc.GEOGRAPHY.items():
        city = gc.CITY_BY_NAME[name]
        assert (geo.lat < 0) == city.southern, name
        assert -90 <= geo.lat <= 90 and -180 <= geo.lon <= 180, name
        assert set(geo.waters) <= set(gc.WATERS), name
        assert not any(gc.names_city(text, city) for text in geo.waters + (geo.mountains or ()) + geo.near), name
        assert set(geo.near).isdisjoint(geo.mountains or ()) and set(geo.near) <= set(gc.RANGES), name
        if geo.capital_of:
            assert set(geo.capital_of) <= set(gc.SUBNATIONAL), name
            assert all(gc.SUBNATIONAL[unit] == city.country for unit in geo.capital_of), name
    for region in gc.REGIONS:
        places = region.members | region.debatable
        assert places <= set(gc.COUNTRIES) | set(gc.CITY_NAMES), region.name
        assert not region.members & region.debatable, region.name


@pytest.mark.parametrize("hidden,question,won", [
    ("Tokyo", "Is the city Tokyo?", True),
    ("Tokyo", "is it tokyo", True),
    ("New York City", "Is the city NYC?", True),
    ("New York City", "Is it New York?", True),
    ("São Paulo", "Is it Sao Paulo?", True),
    ("Mumbai", "Is it Bombay?", True),
    ("Saint Petersburg", "Is it St. Petersburg?", True),
    ("Washington, D.C.", "Is it DC?", True),
    ("Los Angeles", "Is the city LA?", True),
    ("Los Angeles", "Is it near la playa?", False),  # lowercase "la" is a word, not the alias
    ("Tokyo", "Is the city Tokyo or Paris?", False),
    ("Tokyo", "Is it Tokyo, Tokyo, Tokyo?", True),
    ("Tokyo", "Is the city Kyoto?", False),
    ("Tokyo", "Is the city in Japan?", False),
    ("Rio de Janeiro", "Is it on the Rio de la Plata?", False),
    ("Cape Town", "Is the city in South Africa?", False),
])
def test_success_detection(hidden, question, won):
    assert gc.is_success(hidden, question) is won


def test_listing_every_city_never_wins():
    question = "Is it " + ", ".join(gc.CITY_NAMES) + "?"
    assert not any(gc.is_success(name, question) for name in gc.CITY_NAMES)


TASK = gc.guess_city_task()


def test_reward_and_turn_cap():
    env = QuestionGameEnv(TASK)
    assert env.reset(0, hidden_item="Paris") == "Questions:\n"
    total, done, turns = 0.0, False, 0
    while not done:
        observation, reward, done = env.step("Is the city in Asia?\nand more text")
        total, turns = total + reward, turns + 1
        assert reward == -1.0
    assert turns == MAX_TURNS and total == -MAX_TURNS and not env.success
    assert observation == "Questions:\n" + "Is the city in Asia? No, the city is not in Asia.\n" * MAX_TURNS


def test_win_ends_the_game_with_reward_zero():
    env = QuestionGameEnv(TASK)
    env.reset(0, hidden_item="Paris")
    assert env.step("Is the city in Europe?") == (
        "Questions:\nIs the city in Europe? Yes, the city is in Europe.\n", -1.0, False)
    observation, reward, done = env.step("Is the city Paris?")
    assert (reward, done, env.success) == (0.0, True, True)
    assert observation.endswith(f"Is the city Paris? {WIN_ANSWER}\n")


class CountingOracle:
    def __init__(self, inner):
        self.inner, self.calls, self.questions = inner, 0, []

    def answer(self, hidden_items, questions):
        self.calls += 1
        self.questions.append(list(questions))
        return self.inner.answer(hidden_items, questions)


def test_batched_step_calls_the_oracle_once_and_skips_finished_games():
    oracle = CountingOracle(ORACLE)
    env = BatchedQuestionGame(TASK.with_oracle(oracle), batch_size=3)
    env.reset([0, 1, 2], hidden_items=["Paris", "Tokyo", "Lima"])
    obs, rewards, dones = env.step(["Is the city Paris?", "Is it in Asia?", "Is it on the coast?"])
    assert oracle.calls == 1 and oracle.questions[-1] == ["Is it in Asia?", "Is it on the coast?"]
    np.testing.assert_array_equal(rewards, [0.0, -1.0, -1.0])
    np.testing.assert_array_equal(dones, [True, False, False])
    obs2, rewards, dones = env.step(["ignored", "Is the city Tokyo?", "Is it a capital?"])
    assert oracle.calls == 2 and oracle.questions[-1] == ["Is it a capital?"]
    assert obs2[0] == obs[0]
    np.testing.assert_array_equal(rewards, [0.0, 0.0, -1.0])
    env.step(["x", "y", "Is it Lima?"])
    assert oracle.calls == 2  # only a winning question: nothing to ask
    assert env.dones.all() and env.successes.all()
    assert env.history(2) == [("Is it on the coast?", "Yes, the city is on the coast. It lies on the Pacific coast."),
                              ("Is it a capital?", "Yes, it is the capital of its country."),
                              ("Is it Lima?", WIN_ANSWER)]


def test_reset_is_deterministic_under_seed():
    env = BatchedQuestionGame(TASK, batch_size=64)
    env.reset(list(range(64)))
    first = list(env.hidden)
    env.reset(list(range(64)))
    assert env.hidden == first
    assert len(set(first)) > 30  # seeds spread over the table


class FlakyOracle:
    """Raises on the first `failures` calls, then answers (or keeps failing)."""

    def __init__(self, failures):
        self.failures, self.calls = failures, 0

    def answer(self, hidden_items, questions):
        self.calls += 1
        if self.calls <= self.failures:
            raise ConnectionError("transient")
        return ORACLE.answer(hidden_items, questions)


def test_oracle_failures_are_retried_and_counted():
    env = BatchedQuestionGame(TASK.with_oracle(FlakyOracle(2)), batch_size=2)
    env.reset([0, 1], hidden_items=["Paris", "Cairo"])
    env.step(["Is it in Africa?", "Is it in Africa?"])
    assert env.oracle_failures == 2
    assert [a for _, a in env.history(1)] == ["Yes, the city is in Africa."]


def test_oracle_failing_every_try_raises_a_clear_error():
    env = BatchedQuestionGame(TASK.with_oracle(FlakyOracle(10**9)), batch_size=1, max_tries=3)
    env.reset([0])
    with pytest.raises(OracleError, match="failed 3 times"):
        env.step(["Is it in Asia?"])
    assert env.oracle_failures == 3


def test_malformed_oracle_reply_counts_as_failure():
    class ShortOracle:
        def answer(self, hidden_items, questions):
            return []

    env = BatchedQuestionGame(TASK.with_oracle(ShortOracle()), batch_size=1)
    env.reset([0])
    with pytest.raises(OracleError):
        env.step(["Is it in Asia?"])
    assert env.oracle_failures == 3


def test_bad_batch_sizes_are_named():
    env = BatchedQuestionGame(TASK, batch_size=2)
    with pytest.raises(RuntimeError, match="reset"):
        env.step(["a", "b"])
    with pytest.raises(ValueError, match="seeds has 1 entries"):
        env.reset([0])
    env.reset([0, 1])
    with pytest.raises(ValueError, match="actions has 3 entries"):
        env.step(["a", "b", "c"])
    with pytest.raises(ValueError, match="not in task"):
        env.reset([0, 1], hidden_items=["Paris", "Atlantis"])


def test_observation_round_trip():
    turns = [("Is the city in Asia?", "No, the city is not in Asia."), ("Is it Paris?", WIN_ANSWER)]
    assert parse_observation(format_observation(turns)) == turns
    assert clean_question("  Is it Rome?\nIs it Paris?") == "Is it Rome?"
