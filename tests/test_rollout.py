"""The rollout loop's bookkeeping: Monte-Carlo returns and fixed-shape transitions."""

import numpy as np

from archer_jax import rollout


def test_discounted_returns_by_hand():
    # Two conversations over 3 turn slots: the first lasts 3 turns and wins on the last,
    # the second ends (capped) after 2 turns.
    rewards = np.array([[-1.0, -1.0], [-1.0, -1.0], [0.0, 0.0]], np.float32)
    valid = np.array([[True, True], [True, True], [True, False]])
    got = rollout.discounted_returns(rewards, valid, gamma=0.5)
    want = np.array([[-1.5, -1.5], [-1.0, -1.0], [0.0, 0.0]], np.float32)
    np.testing.assert_allclose(got, want)
