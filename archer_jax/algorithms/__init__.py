"""Update phases of the training algorithms: jitted, module-level pure functions."""
