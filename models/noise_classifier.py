"""Noise-level classifiers for Denoising MCMC: x_hat -> logits over the noise ladder.

They keep the shared model contract `module(x, labels, train)` so that train.py's
init, checkpointing and EMA work unchanged, but ignore `labels` and return
logits [B, n_levels]; they are not score networks (objectives.py picks their loss for
training.objective='noise_classifier'). Sizes come from `config.dmcmc.*`, which a
classifier's training config and the `--mode dmcmc` config share.

The VE-view input spans sigma_min to sigma_max (0.01 to 50 by default), so both
networks see a scale-free input x / sqrt(1 + r^2) beside log r, with r the
per-sample root-mean-square of x: the scale carries most of the evidence about
sigma and would otherwise saturate the first layer.
"""
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from errors import ConfigError
from models import layers


def _normalise(x: jax.Array) -> tuple[jax.Array, jax.Array]:
  """(x / sqrt(1 + r^2) like x, log r [B, 1]) with r = rms of each sample."""
  r2 = jnp.mean(jnp.square(x.reshape(x.shape[0], -1)), axis=-1)
  scale = jax.lax.rsqrt(1. + r2).reshape((-1,) + (1,) * (x.ndim - 1))
  return x * scale, 0.5 * jnp.log(r2 + 1e-12)[:, None]


def _check(config, n_levels):
  if n_levels < 2:
    raise ConfigError(f'dmcmc.n_levels={n_levels} must be >= 2')
  if not config.dmcmc.classifier_hidden_dims or min(config.dmcmc.classifier_hidden_dims) < 1:
    raise ConfigError('dmcmc.classifier_hidden_dims must be a non-empty list of positive widths')


class NoiseMLP(nn.Module):
  """MLP classifier for low-dimensional data: x [B, D] -> logits [B, n_levels]."""
  n_levels: int = 1000
  hidden_dims: Sequence[int] = (256, 256, 256)
  nonlinearity: str = 'swish'

  @classmethod
  def from_config(cls, config: ml_collections.ConfigDict) -> 'NoiseMLP':
    d = config.dmcmc
    _check(config, d.n_levels)
    layers.get_act(config.model.nonlinearity.lower())
    return cls(n_levels=d.n_levels, hidden_dims=tuple(d.classifier_hidden_dims),
               nonlinearity=config.model.nonlinearity.lower())

  @nn.compact
  def __call__(self, x: jax.Array, labels: jax.Array, train: bool = False) -> jax.Array:
    """x [B, D] (other shapes are flattened); labels ignored. Returns logits [B, n_levels]."""
    del labels, train
    act = layers.get_act(self.nonlinearity)
    u, log_r = _normalise(x.reshape(x.shape[0], -1).astype(jnp.float32))
    h = jnp.concatenate([u, log_r], axis=-1)
    for width in self.hidden_dims:
      h = act(layers.dense(width)(h))
    return layers.dense(self.n_levels)(h)


class NoiseCNN(nn.Module):
  """Small CNN classifier for images: x [B, H, W, C] -> logits [B, n_levels].

  Conv-act blocks at stride 1 then 2 per width, global mean pooling, then an MLP
  head that also sees log r.
  """
  n_levels: int = 1000
  channels: Sequence[int] = (32, 64)
  hidden_dims: Sequence[int] = (256,)
  nonlinearity: str = 'swish'

  @classmethod
  def from_config(cls, config: ml_collections.ConfigDict) -> 'NoiseCNN':
    d = config.dmcmc
    _check(config, d.n_levels)
    if not d.classifier_channels or min(d.classifier_channels) < 1:
      raise ConfigError('dmcmc.classifier_channels must be a non-empty list of positive widths')
    layers.get_act(config.model.nonlinearity.lower())
    return cls(n_levels=d.n_levels, channels=tuple(d.classifier_channels),
               hidden_dims=tuple(d.classifier_hidden_dims),
               nonlinearity=config.model.nonlinearity.lower())

  @nn.compact
  def __call__(self, x: jax.Array, labels: jax.Array, train: bool = False) -> jax.Array:
    """x [B, H, W, C]; labels ignored. Returns logits [B, n_levels]."""
    del labels, train
    if x.ndim != 4:
      raise ConfigError(f'noise_cnn needs images [B, H, W, C], got shape {x.shape}; '
                        'use dmcmc.classifier_model=noise_mlp for vectors')
    act = layers.get_act(self.nonlinearity)
    h, log_r = _normalise(x.astype(jnp.float32))
    for width in self.channels:
      h = act(layers.conv3x3(width)(h))
      h = act(layers.conv3x3(width, stride=2)(h))
    h = jnp.concatenate([jnp.mean(h, axis=(1, 2)), log_r], axis=-1)
    for width in self.hidden_dims:
      h = act(layers.dense(width)(h))
    return layers.dense(self.n_levels)(h)
