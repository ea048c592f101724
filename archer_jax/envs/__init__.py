"""Text environments: the generic question game, Guess My City, scripted players."""

from archer_jax.envs.guess_city import CITIES, CityOracle, guess_city_task
from archer_jax.envs.question_game import (
    BatchedQuestionGame,
    Oracle,
    OracleError,
    QuestionGameEnv,
    QuestionTask,
)
from archer_jax.envs.scripted import DEFAULT_MIX, QUESTIONERS, simulate_episodes

__all__ = [
    "CITIES", "CityOracle", "guess_city_task", "BatchedQuestionGame", "Oracle", "OracleError",
    "QuestionGameEnv", "QuestionTask", "DEFAULT_MIX", "QUESTIONERS", "simulate_episodes",
]
