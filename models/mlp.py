"""A small time-conditioned MLP for low-dimensional data (the 2-D toys).

Same contract as NCSNpp: a bare function of (x, noise label) that returns an
array shaped like x, and knows nothing about SDEs.
"""
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from errors import ConfigError
from models import layers


def tiny_config_overrides() -> dict:
  """`config.<group>.<field>` overrides for a tiny ScoreMLP used by tests."""
  return {
      'model.name': 'mlp',
      'model.nf': 8,
      'model.hidden_dims': (16, 16),
      'data.dim': 2,
  }


class ScoreMLP(nn.Module):
  """MLP score network: x [B, D] and labels [B] -> [B, D].

  The label is embedded as in NCSN++ (Fourier or sinusoidal features of width
  2*nf or nf, then Dense(4nf)-act-Dense(4nf)), and each hidden layer adds a
  per-unit bias projected from that embedding, the way NCSN++'s residual
  blocks are conditioned:

    h_0 = x;  h_i = act(W_i h_{i-1} + b_i + U_i act(temb) + c_i)

  Attributes:
    dim: D, the data dimension.
    hidden_dims: widths of the hidden layers.
    nf: base width of the label embedding.
    embedding_type: 'fourier' or 'positional'.
    fourier_scale: standard deviation of the Fourier frequencies.
    conditional: whether the network sees the label at all.
    nonlinearity: a key of layers.ACTIVATIONS ('swish' is SiLU).
    init_scale: init scale of the output layer (0 starts the output at ~0).
  """
  dim: int = 2
  hidden_dims: Sequence[int] = (256, 256, 256)
  nf: int = 128
  embedding_type: str = 'positional'
  fourier_scale: float = 16.
  conditional: bool = True
  nonlinearity: str = 'swish'
  init_scale: float = 0.

  tiny_config_overrides = staticmethod(tiny_config_overrides)

  @classmethod
  def from_config(cls, config: ml_collections.ConfigDict) -> 'ScoreMLP':
    """Builds the network from `config.model.*` and `config.data.dim`.

    Raises:
      ConfigError: a field has an unknown or inconsistent value.
    """
    model = config.model
    embedding_type = model.embedding_type.lower()
    if embedding_type not in ('fourier', 'positional'):
      raise ConfigError(f'model.embedding_type={model.embedding_type!r} is '
                        'unknown; use one of fourier, positional')
    layers.get_act(model.nonlinearity.lower())  # ConfigError if unknown.
    if not model.hidden_dims or min(model.hidden_dims) < 1:
      raise ConfigError(f'model.hidden_dims={tuple(model.hidden_dims)} must be '
                        'a non-empty list of positive widths, e.g. (256, 256)')
    if config.data.dim < 1:
      raise ConfigError(f'data.dim={config.data.dim} must be positive')
    return cls(
        dim=config.data.dim,
        hidden_dims=tuple(model.hidden_dims),
        nf=model.nf,
        embedding_type=embedding_type,
        fourier_scale=model.fourier_scale,
        conditional=model.conditional,
        nonlinearity=model.nonlinearity.lower(),
        init_scale=model.init_scale,
    )

  @nn.compact
  def __call__(self, x: jax.Array, labels: jax.Array,
               train: bool = False) -> jax.Array:
    """Evaluates the network.

    Args:
      x: [B, D] points (noisy).
      labels: [B] float noise labels (or a scalar, broadcast to [B]).
      train: unused (no dropout); kept for the shared model contract.

    Returns:
      [B, D], same dtype as x.
    """
    del train
    if x.ndim != 2 or x.shape[-1] != self.dim:
      raise ConfigError(f'mlp input has shape {x.shape} but data.dim='
                        f'{self.dim}; make the config match the data')
    act = layers.get_act(self.nonlinearity)
    temb = None
    if self.conditional:
      labels = jnp.broadcast_to(jnp.asarray(labels, jnp.float32), x.shape[:1])
      if self.embedding_type == 'fourier':
        temb = layers.GaussianFourierProjection(
            embedding_size=self.nf, scale=self.fourier_scale)(labels)
      else:
        temb = layers.get_timestep_embedding(labels, self.nf)
      temb = layers.dense(4 * self.nf)(temb)
      temb = act(layers.dense(4 * self.nf)(act(temb)))

    h = x
    for width in self.hidden_dims:
      h = layers.dense(width)(h)
      if temb is not None:
        h += layers.dense(width)(temb)
      h = act(h)
    return layers.dense(self.dim, init_scale=self.init_scale)(h).astype(x.dtype)
