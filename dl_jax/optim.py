"""Optimizers of section 2.6, by name, through optax, with an optional learning-rate schedule."""

import optax

from dl_jax.errors import ConfigError

# name -> factory(learning_rate) (keyword `learning_rate`, for optax.inject_hyperparams) -> optax.GradientTransformation
OPTIMIZERS = {
    "sgd": optax.sgd,  # eq. 2.65
    # eq. 2.66-2.67: v <- gamma v - alpha grad, theta <- theta + v (optax keeps the negated trace).
    "momentum": lambda learning_rate: optax.sgd(learning_rate, momentum=0.9),
    "nesterov": lambda learning_rate: optax.sgd(learning_rate, momentum=0.9, nesterov=True),
    "adagrad": optax.adagrad,
    "adadelta": optax.adadelta,
    "rmsprop": optax.rmsprop,
    "adam": optax.adam,
}

SCHEDULES = ("constant", "cosine")


def make_schedule(name: str, learning_rate: float, total_steps: int, warmup_steps: int = 0):
  if name not in SCHEDULES:
    raise ConfigError(f"unknown lr_schedule {name!r}; accepted: {', '.join(SCHEDULES)}")
  if name == "constant":
    return optax.constant_schedule(learning_rate)
  if not warmup_steps:
    return optax.cosine_decay_schedule(learning_rate, max(total_steps, 1))
  return optax.warmup_cosine_decay_schedule(0.0, learning_rate, warmup_steps, total_steps)


def make_optimizer(name: str, learning_rate: float, schedule: str = "constant",
                   total_steps: int = 1, warmup_steps: int = 0) -> optax.GradientTransformation:
  if name not in OPTIMIZERS:
    raise ConfigError(f"unknown optimizer {name!r}; accepted: {', '.join(OPTIMIZERS)}")
  if not learning_rate > 0:
    raise ConfigError(f"learning_rate={learning_rate} must be a positive number")
  return OPTIMIZERS[name](make_schedule(schedule, learning_rate, total_steps, warmup_steps))
