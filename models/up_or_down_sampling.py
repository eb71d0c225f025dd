"""FIR up/down-sampling with plain XLA convolutions (no custom kernels).

StyleGAN2's `upfirdn2d` (Karras et al. 2020, App. B) as used by NCSN++ (Song
et al. 2021, App. H: "FIR" anti-aliased resampling), built from XLA's own ops
only (no custom kernels), so it runs unchanged on CPU, GPU and TPU and
differentiates like any convolution: zero insertion is `lax.pad`'s interior
padding, and the FIR convolution is
- for a separable kernel (given 1-D, as NCSN++'s (1, 3, 3, 1)): two 1-D
  convolutions written out as sums of K strided slices, one per tap;
- for a 2-D kernel: a depthwise `lax.conv_general_dilated`.
The written-out form is the fast one: XLA:CPU runs the depthwise convolution
and its gradient 40x (up) to 300x (down) slower than the slice sums on a
[16, 16, 16, 64] activation (measured on this 2-core machine).

Conventions: arrays are NHWC; kernels are normalised to sum 1 (per axis for a
separable one) so that resampling preserves a constant signal: upsampling by
`factor` multiplies the kernel by factor**2 (factor per axis), because zero
insertion leaves one sample in factor**2 non-zero.
"""
from typing import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from models import weight_grad


def setup_kernel(k: Sequence[float], gain: float = 1.) -> np.ndarray:
  """Normalises a FIR kernel: 1-D [K] (separable) to sum sqrt(gain) per axis,
  2-D [K, K] to sum gain, so that the 2-D filter has DC gain `gain`."""
  k = np.asarray(k, dtype=np.float32)
  return k / k.sum() * (np.sqrt(gain) if k.ndim == 1 else gain)


def _fir_axis(x: jax.Array, k: np.ndarray, axis: int, down: int) -> jax.Array:
  """'VALID' 1-D convolution with `k` along `axis`, keeping every down-th output."""
  n = (x.shape[axis] - len(k)) // down + 1
  taps = k[::-1]                                  # convolution, not correlation
  return sum(float(taps[i]) * jax.lax.slice_in_dim(x, i, i + (n - 1) * down + 1, down, axis)
             for i in range(len(k)))


def upfirdn2d(x: jax.Array, k: np.ndarray, up: int = 1, down: int = 1,
              pad: tuple = (0, 0)) -> jax.Array:
  """Upsample by zero insertion, pad, convolve with `k`, keep every down-th.

  Args:
    x: [B, H, W, C].
    k: [K] separable FIR kernel (the 2-D filter is outer(k, k)), or [K, K];
      used as a true convolution, i.e. flipped.
    up: zero-insertion factor.
    down: decimation factor.
    pad: (before, after) padding of the upsampled signal, on both spatial
      axes; negative values crop.

  Returns:
    [B, H', W', C] with H' = (H * up + pad0 + pad1 - K) // down + 1.
  """
  pad0, pad1 = pad
  # Zero insertion is interior padding; upfirdn's upsampled signal also ends
  # with up - 1 zeros, hence the extra `up - 1` after.
  spatial = (pad0, pad1 + up - 1, up - 1)
  x = jax.lax.pad(x, jnp.zeros((), x.dtype),
                  [(0, 0, 0), spatial, spatial, (0, 0, 0)])
  if k.ndim == 1:
    return _fir_axis(_fir_axis(x, k, 1, down), k, 2, down)
  channels = x.shape[-1]
  kernel = jnp.asarray(k[::-1, ::-1], x.dtype)
  kernel = jnp.tile(kernel[:, :, None, None], (1, 1, 1, channels))
  return jax.lax.conv_general_dilated(
      x, kernel, window_strides=(down, down), padding='VALID',
      dimension_numbers=('NHWC', 'HWIO', 'NHWC'), feature_group_count=channels)


def upsample_2d(x: jax.Array, k: Sequence[float] = (1, 3, 3, 1),
                factor: int = 2) -> jax.Array:
  """FIR upsampling: [B, H, W, C] -> [B, factor H, factor W, C]."""
  kernel = setup_kernel(k, gain=factor ** 2)
  p = kernel.shape[0] - factor
  return upfirdn2d(x, kernel, up=factor, pad=((p + 1) // 2 + factor - 1, p // 2))


def downsample_2d(x: jax.Array, k: Sequence[float] = (1, 3, 3, 1),
                  factor: int = 2) -> jax.Array:
  """FIR downsampling: [B, H, W, C] -> [B, H / factor, W / factor, C]."""
  kernel = setup_kernel(k)
  p = kernel.shape[0] - factor
  return upfirdn2d(x, kernel, down=factor, pad=((p + 1) // 2, p // 2))


class Conv2dResample(nn.Module):
  """A 3x3 (or `kernel`-sized) conv fused with FIR up- or down-sampling.

  Up: a stride-`factor` transposed convolution followed by the FIR filter,
  equal to "FIR-upsample, then conv" but without the wasted multiplications
  by inserted zeros. Down: FIR filter, then a stride-`factor` convolution.
  Parameters: `kernel` [k, k, C_in, C_out] and `bias` [C_out], as score_sde's
  up_or_down_sampling.Conv2d (models.layers passes DDPM's initialiser).

  Attributes:
    features: output channels.
    kernel: spatial size of the conv kernel.
    up: upsample by `factor`.
    down: downsample by `factor`.
    resample_kernel: the FIR kernel (1-D, separable).
    factor: resampling factor.
    kernel_init: initialiser of the conv kernel.
  """
  features: int
  kernel: int = 3
  up: bool = False
  down: bool = False
  resample_kernel: Sequence[float] = (1, 3, 3, 1)
  factor: int = 2
  kernel_init: Callable = jax.nn.initializers.lecun_normal()

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """Args: x [B, H, W, C]. Returns: [B, H', W', features]."""
    assert not (self.up and self.down)
    w = self.param('kernel', self.kernel_init,
                   (self.kernel, self.kernel, x.shape[-1], self.features))
    b = self.param('bias', jax.nn.initializers.zeros, (self.features,))
    w = w.astype(x.dtype)
    dims = ('NHWC', 'HWIO', 'NHWC')
    f, kw = self.factor, self.kernel
    if self.up:
      fir = setup_kernel(self.resample_kernel, gain=f ** 2)
      # Transposed conv (zero insertion + full padding, correlation with w):
      # output (H - 1) f + kw, then the FIR filter brings it to f H.
      x = jax.lax.conv_general_dilated(
          x, w, (1, 1), [(kw - 1, kw - 1)] * 2, lhs_dilation=(f, f),
          dimension_numbers=dims)
      p = (fir.shape[0] - f) - (kw - 1)
      x = upfirdn2d(x, fir, pad=((p + 1) // 2 + f - 1, p // 2 + 1))
    elif self.down:
      fir = setup_kernel(self.resample_kernel)
      p = (fir.shape[0] - f) + (kw - 1)
      x = upfirdn2d(x, fir, pad=((p + 1) // 2, p // 2))
      x = weight_grad.conv_general_dilated(x, w, (f, f), 'VALID', dimension_numbers=dims)
    else:
      x = weight_grad.conv_general_dilated(x, w, (1, 1), 'SAME', dimension_numbers=dims)
    return x + b.astype(x.dtype)
