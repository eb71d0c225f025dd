"""The optimizer of `optim.*`: Adam(W) with linear warm-up and global-norm clipping."""
from __future__ import annotations

import jax.numpy as jnp
import ml_collections
import optax

from errors import lookup

OPTIMIZERS = {'adam': optax.adamw}


def get_optimizer(config: ml_collections.ConfigDict) -> optax.GradientTransformation:
  """Adam(W) with linear warm-up and global-norm clipping (score_sde's `optimization_manager`)."""
  o = config.optim
  make = lookup(OPTIMIZERS, o.optimizer.lower(), 'optim.optimizer')
  if o.warmup > 0:
    # Step k (counting from 0) uses lr (k + 1) / warmup, so the first step is not wasted
    # at lr = 0 (score_sde's schedule gives step 0 a zero learning rate).
    lr = lambda count: o.lr * jnp.minimum((count + 1.) / o.warmup, 1.)
  else:
    lr = o.lr
  tx = make(learning_rate=lr, b1=o.beta1, eps=o.eps, weight_decay=o.weight_decay)
  if o.grad_clip >= 0:
    tx = optax.chain(optax.clip_by_global_norm(o.grad_clip), tx)
  return tx
