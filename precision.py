"""training.precision: a network that computes in bfloat16 while its params stay float32."""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from errors import lookup

PRECISIONS = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}
# Modules that keep float32 inputs under bfloat16 compute: the Fourier features of a
# log-sigma label multiply it by frequencies ~ N(0, 16^2) before sin / cos, so bfloat16's
# 8-bit mantissa would scramble their phases.
_FLOAT32_MODULES = ('GaussianFourierProjection',)


class MixedPrecisionModel:
  """A network whose `apply` computes in `dtype` while its params stay float32.

  Every float32 parameter is cast to `dtype` on the way in (so the gradient comes back
  float32, through the cast), the image input too, and a Flax method interceptor casts
  the floating inputs of every submodule call (the noise-label embedding included),
  so that each convolution, matmul and activation runs in `dtype`. The root's noise
  labels stay float32 and the output is cast back to float32, so the loss, the gradient
  and the optimizer state are float32. GroupNorm's statistics are float32 (Flax reduces
  in float32 by default). Used for the train step when training.precision='bfloat16'.
  """

  def __init__(self, model: nn.Module, dtype):
    self.model, self.dtype = model, dtype

  def _cast(self, tree):
    return jax.tree.map(lambda a: a.astype(self.dtype) if isinstance(a, jax.Array) and
                        a.dtype == jnp.float32 else a, tree)

  def _interceptor(self, next_fun, args, kwargs, context):
    module = context.module
    if (context.method_name == '__call__' and module.scope is not None and module.scope.path
        and type(module).__name__ not in _FLOAT32_MODULES):
      args, kwargs = self._cast(args), self._cast(kwargs)
    return next_fun(*args, **kwargs)

  def apply(self, variables, x, *args, **kwargs):
    with nn.intercept_methods(self._interceptor):
      out = self.model.apply(self._cast(variables), x.astype(self.dtype), *args, **kwargs)
    return jax.tree.map(lambda a: a.astype(jnp.float32) if a.dtype == self.dtype else a, out)


def compute_model(config: ml_collections.ConfigDict, model: nn.Module):
  """`model`, or its MixedPrecisionModel for training.precision='bfloat16'."""
  precision = config.training.get('precision', 'float32')
  dtype = lookup(PRECISIONS, precision, 'training.precision')
  return model if dtype == jnp.float32 else MixedPrecisionModel(model, dtype)
