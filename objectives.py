"""What `--mode train` minimises: training.objective -> the loss_fn of the shared train step.

Each objective module builds its own `loss_fn(params, key, batch)` from a config
(`<module>.loss_fn_from_config(config, sde, model, *, train)`); this registry picks one
and `train_state.make_train_step` runs it, so the score model and both classifiers train
through the same step (optax update, EMA, fold_in(rng, step) keys). DSB passes its mean
matching loss to the same step from `dsb/ipf.py`. `--mode eval` takes its test loss
from here too, without importing the training loop.
"""
from __future__ import annotations

from typing import Callable

import ml_collections
import optax

import guidance
import losses
import precision
import sde_lib
import train_state
from dmcmc import classifier
from errors import lookup

# (config, sde, model, *, train) -> loss_fn(params, key, batch) -> scalar
ObjectiveFn = Callable[..., train_state.LossFn]

OBJECTIVES: dict[str, ObjectiveFn] = {
    'score': losses.loss_fn_from_config,                   # batch: x0
    'noise_classifier': classifier.loss_fn_from_config,    # batch: x0 (DMCMC, dmcmc/)
    'time_classifier': guidance.loss_fn_from_config,       # batch: (x0, y) (guidance.py)
}


def get_objective(config: ml_collections.ConfigDict) -> ObjectiveFn:
  """The builder of training.objective; ConfigError listing the valid names if unknown."""
  return lookup(OBJECTIVES, config.training.get('objective', 'score'), 'training.objective')


def train_loss_fn(config: ml_collections.ConfigDict, sde: sde_lib.SDE,
                  model) -> train_state.LossFn:
  """The objective's loss in training: dropout on, the network in training.precision."""
  build = get_objective(config)
  return build(config, sde, precision.compute_model(config, model), train=True)


def eval_loss_fn(config: ml_collections.ConfigDict, sde: sde_lib.SDE,
                 model) -> train_state.LossFn:
  """eval_loss(params, key, batch) -> scalar, with the network in eval mode (float32)."""
  return get_objective(config)(config, sde, model, train=False)


def get_train_step(config: ml_collections.ConfigDict, sde: sde_lib.SDE, model,
                   optimizer: optax.GradientTransformation):
  """The shared train step with this config's objective and EMA (model.ema_rate/ema_warmup).

  With training.precision='bfloat16' the network computes in bfloat16
  (precision.MixedPrecisionModel); params, EMA, optimizer state, loss and gradients stay
  float32.

  Returns:
    step_fn(state, batch [B, ...]) -> (state, loss).
  """
  return train_state.make_train_step(train_loss_fn(config, sde, model), optimizer,
                                     config.model.ema_rate, config.model.ema_warmup,
                                     microbatches=config.training.get('microbatches', 1))
