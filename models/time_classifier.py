"""Time-dependent classifiers p_t(y | x(t)) for class-conditional sampling (guidance.py).

They keep the shared model contract `module(x, labels, train)`: `labels` is the
time label 999 t (the VP/sub-VP score networks' convention, meaningful for any
SDE since t is in [0, 1]), embedded as in the score networks (DDPM's sinusoidal
features, then Dense(4 nf)-act-Dense(4 nf)) and added as a per-channel bias in
every layer. They return class logits [B, num_classes], not scores
(training.objective='time_classifier' in objectives.py). The input is scaled to unit
marginal variance by the wrapper `guidance.logits_fn` (the c_in of the
parameterisation), not here. Sizes come from `config.classifier.*`; the class
count from the dataset (`datasets.num_classes`).
"""
from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from errors import ConfigError
from models import layers


def _time_embedding(labels: jax.Array, batch: int, nf: int, act) -> jax.Array:
  """Sinusoidal embedding of the time labels [B] -> [B, 4 nf], as ScoreMLP / NCSN++."""
  labels = jnp.broadcast_to(jnp.asarray(labels, jnp.float32), (batch,))
  temb = layers.dense(4 * nf)(layers.get_timestep_embedding(labels, nf))
  return act(layers.dense(4 * nf)(act(temb)))


def _fields(config: ml_collections.ConfigDict) -> dict:
  """The shared sizes, checked: ConfigError naming the field."""
  import datasets  # pylint: disable=g-import-not-at-top  (models must not need datasets at import)
  c = config.classifier
  if not c.hidden_dims or min(c.hidden_dims) < 1:
    raise ConfigError(f'classifier.hidden_dims={tuple(c.hidden_dims)} must be a non-empty '
                      'list of positive widths, e.g. (256,)')
  if c.nf < 2:
    raise ConfigError(f'classifier.nf={c.nf} must be >= 2 (the time-embedding width)')
  layers.get_act(config.model.nonlinearity.lower())
  return dict(num_classes=datasets.num_classes(config), hidden_dims=tuple(c.hidden_dims),
              nf=c.nf, nonlinearity=config.model.nonlinearity.lower())


class TimeMLP(nn.Module):
  """MLP classifier for low-dimensional data: x [B, D], time labels [B] -> logits [B, K]."""
  num_classes: int = 10
  hidden_dims: Sequence[int] = (256, 256)
  nf: int = 32
  nonlinearity: str = 'swish'

  @classmethod
  def from_config(cls, config: ml_collections.ConfigDict) -> 'TimeMLP':
    return cls(**_fields(config))

  @staticmethod
  def tiny_config_overrides() -> dict:
    """`group.field` overrides for a tiny TimeMLP (configs/tiny.py)."""
    return {'classifier.hidden_dims': (16, 16)}

  @nn.compact
  def __call__(self, x: jax.Array, labels: jax.Array, train: bool = False) -> jax.Array:
    """x [B, D] (other shapes are flattened). Returns logits [B, num_classes]."""
    del train
    act = layers.get_act(self.nonlinearity)
    h = x.reshape(x.shape[0], -1).astype(jnp.float32)
    temb = _time_embedding(labels, x.shape[0], self.nf, act)
    for width in self.hidden_dims:
      h = act(layers.dense(width)(h) + layers.dense(width)(temb))
    return layers.dense(self.num_classes)(h)


class TimeCNN(nn.Module):
  """Small noise-conditional CNN for images: x [B, H, W, C], labels [B] -> logits [B, K].

  Per width: conv3x3 (+ time bias), act, conv3x3 at stride 2, act; then global
  mean pooling and an MLP head, each hidden layer also time-conditioned.
  """
  num_classes: int = 10
  channels: Sequence[int] = (32, 64)
  hidden_dims: Sequence[int] = (256,)
  nf: int = 32
  nonlinearity: str = 'swish'

  @classmethod
  def from_config(cls, config: ml_collections.ConfigDict) -> 'TimeCNN':
    channels = tuple(config.classifier.channels)
    if not channels or min(channels) < 1:
      raise ConfigError(f'classifier.channels={channels} must be a non-empty list of '
                        'positive widths, e.g. (32, 64)')
    return cls(channels=channels, **_fields(config))

  @staticmethod
  def tiny_config_overrides() -> dict:
    """`group.field` overrides for a tiny TimeCNN (configs/tiny.py)."""
    return {'classifier.channels': (8,), 'classifier.hidden_dims': (16,)}

  @nn.compact
  def __call__(self, x: jax.Array, labels: jax.Array, train: bool = False) -> jax.Array:
    """x [B, H, W, C]. Returns logits [B, num_classes]."""
    del train
    if x.ndim != 4:
      raise ConfigError(f'time_cnn needs images [B, H, W, C], got shape {x.shape}; use '
                        'classifier.model=time_mlp for vectors')
    act = layers.get_act(self.nonlinearity)
    temb = _time_embedding(labels, x.shape[0], self.nf, act)
    h = x.astype(jnp.float32)
    for width in self.channels:
      h = act(layers.conv3x3(width)(h) + layers.dense(width)(temb)[:, None, None, :])
      h = act(layers.conv3x3(width, stride=2)(h))
    h = jnp.mean(h, axis=(1, 2))
    for width in self.hidden_dims:
      h = act(layers.dense(width)(h) + layers.dense(width)(temb))
    return layers.dense(self.num_classes)(h)
