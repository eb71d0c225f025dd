"""The forward and backward networks, and the transition means they define.

Parameterisation (the reference code's `mean_match=False`): a network predicts the
displacement, and the mean of a transition is

  F_k(x) = x + net_f(x, label_k),     B_{k+1}(x) = x + net_b(x, label_{k+1}).

We prefer it to a network that outputs the mean itself because the displacement is
O(gamma) while x is O(1): the regression targets of the mean-matching loss are then
all of the same small scale, a zero-initialised output layer (both `models` networks
have one) starts IPF from the Brownian motion, and the network never has to spend
capacity reproducing the identity map to a precision of gamma.

Networks: any of `models.MODELS` (the MLP for 2-D, NCSN++ for images; time-conditioned
through `schedule.time_labels`), or `affine`: a separate affine map per step,
net(x, k) = A_k x + c_k, which is exactly the family that the Gaussian-to-Gaussian
bridge needs (every transition of the Gaussian SB is affine-Gaussian), so its pushforward
moments are computable in closed form (`affine_chain_moments`).
"""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from errors import ConfigError
from models import create_model
from models import utils as mutils
from dsb.schedule import MeanFn

Array = jax.Array


class AffineNet(nn.Module):
  """net(x, k) = A_k x + c_k with separate (A_k, c_k) for each grid point k.

  Attributes:
    dim: D, data dimension.
    num_points: N + 1 grid points.
  Inputs x [B, D], k [B] int; output [B, D]. Initialised at zero (identity mean).
  """
  dim: int
  num_points: int

  @nn.compact
  def __call__(self, x: Array, k: Array, train: bool = False) -> Array:
    del train
    a = self.param('A', nn.initializers.zeros, (self.num_points, self.dim, self.dim))
    c = self.param('c', nn.initializers.zeros, (self.num_points, self.dim))
    return jnp.einsum('bij,bj->bi', a[k], x) + c[k]


class Network:
  """A network plus how its step index is fed to it.

  Attributes:
    module: the flax module.
    labels: [N + 1] time labels for `models` networks; None for `affine` (it takes k).
  """

  def __init__(self, module: nn.Module, labels: np.ndarray | None):
    self.module = module
    self.labels = None if labels is None else jnp.asarray(labels)

  def init(self, key: Array, data_shape: tuple) -> Any:
    x = jnp.zeros((1,) + tuple(data_shape), jnp.float32)
    k = jnp.zeros((1,), jnp.int32)
    return self.module.init(key, x, self._label(k), train=False)['params']

  def _label(self, k: Array) -> Array:
    return k if self.labels is None else self.labels[k]

  def mean_fn(self, params: Any, train: bool = False, rng: Array | None = None) -> MeanFn:
    """x + net(x, label_k): the transition mean, `mean_fn(x [B, ...], k [B]) -> [B, ...]`."""
    model_fn = mutils.get_model_fn(self.module, params, train=train, rng=rng)
    return lambda x, k: x + model_fn(x, self._label(k))


def make_network(config, data_shape: tuple, labels: np.ndarray) -> Network:
  """`dsb.network`: 'model' (the `config.model` network from `models`) or 'affine'."""
  kind = config.dsb.network
  if kind == 'affine':
    if len(data_shape) != 1:
      raise ConfigError(f'dsb.network=affine needs vector data, got shape {data_shape}; '
                        'use dsb.network=model for images')
    return Network(AffineNet(dim=data_shape[0], num_points=len(labels)), None)
  if kind == 'model':
    return Network(create_model(config), labels)
  raise ConfigError(f'dsb.network={kind!r} is unknown; valid: affine, model')


def affine_chain_moments(params: Any, gammas: np.ndarray, mean: np.ndarray, cov: np.ndarray, *,
                         forward: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Exact law of the chain an `AffineNet` defines, started from N(mean, cov) (float64).

  With mean map x + A_k x + c_k and noise 2 gamma I, every state is Gaussian; we carry the
  start point's cross-covariance along to get the static coupling.

  Returns:
    (end mean [D], end cov [D, D], cross-covariance Cov(X_start, X_end) [D, D]).
  """
  a = np.asarray(params['A'], np.float64)
  c = np.asarray(params['c'], np.float64)
  n, d = len(gammas), len(mean)
  m, s, cross = np.asarray(mean, np.float64), np.asarray(cov, np.float64), np.asarray(cov, np.float64)
  for i in range(n):
    k = i if forward else n - i          # F_k for k = 0..N-1; B_{k+1} for k + 1 = N..1
    g = gammas[i] if forward else gammas[n - 1 - i]
    lin = np.eye(d) + a[k]
    m = lin @ m + c[k]
    s = lin @ s @ lin.T + 2. * g * np.eye(d)
    cross = cross @ lin.T
  return m, s, cross
