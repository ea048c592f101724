"""Text environments: the question game, Guess My City, Twenty Questions, scripted players."""

from archer_jax.envs.guess_city import CITIES, CityOracle, guess_city_task
from archer_jax.envs.question_game import (
    BatchedQuestionGame,
    Oracle,
    OracleError,
    QuestionGameEnv,
    QuestionTask,
)
from archer_jax.envs.base import BatchedEnv, Episode, Task, play_seeds, simulate_episodes
from archer_jax.envs.twenty_questions import (
    ObjectOracle,
    twenty_questions_subset_task,
    twenty_questions_task,
)
from archer_jax.envs.twenty_questions_objects import OBJECTS

__all__ = [
    "BatchedEnv",
    "CITIES",
    "Episode",
    "OBJECTS",
    "BatchedQuestionGame",
    "CityOracle",
    "ObjectOracle",
    "Oracle",
    "OracleError",
    "QuestionGameEnv",
    "QuestionTask",
    "Task",
    "guess_city_task",
    "play_seeds",
    "simulate_episodes",
    "twenty_questions_subset_task",
    "twenty_questions_task",
]
