"""A 3x3 'SAME' convolution of a nearest-neighbour 2x upsampled image, without upsampling.

DDPM's and DDPM++'s upsampling layers (score_sde's `Upsample` with a conv, and the
BigGAN residual block with up=True and fir=False) compute conv3x3(up(h)), where
up repeats every pixel of h [B, H, W, C] 2x2. Output pixel (2y + i, 2x + j) reads the
upsampled rows 2y + i - 1, 2y + i, 2y + i + 1, which are the low-resolution rows
y - 1, y, y for i = 0 and y, y, y + 1 for i = 1 (columns alike). So each of the four
output phases (i, j) is a 2x2 convolution of h itself, with the kernel taps that read
the same low-resolution pixel summed:

    rows of phase i = 0: (w[0], w[1] + w[2]) on rows (y - 1, y)
    rows of phase i = 1: (w[0] + w[1], w[2]) on rows (y, y + 1)

and the same over the columns within each row. The zero padding agrees too: the
upsampled image's row -1 is zero, and so is h's. The result equals conv3x3(up(h)) up to
float rounding of the summed taps; the parameters are the 3x3 kernel's, unchanged.

Why: it does 4 x 4 multiply-adds per input channel and low-resolution pixel instead of
4 x 9 (2.25x fewer FLOPs), never builds the 4x larger upsampled input, and its gradient
has no 2x2 sum-pooling. On XLA:CPU that sum-pooling fused with the input-gradient
convolution into one single-threaded YNNPACK call; with the four 2x2 convolutions the
DDPM++ up-block's convolution (16 -> 32 pixels, 64 channels, batch 64) takes 48 ms for
value and gradients instead of 139 ms (benchmarks/upsample_conv.py). Checked against
conv3x3(up(h)) in tests/test_models.py.
"""
import jax
import jax.numpy as jnp
from jax import lax

from models import weight_grad


def _phase_taps(k: jax.Array, axis: int) -> tuple[jax.Array, jax.Array]:
  """The 2-tap kernels of phases 0 and 1 along `axis` (0: rows, 1: columns) of k [3, 3, ...]."""
  t0, t1, t2 = (lax.index_in_dim(k, i, axis, keepdims=True) for i in range(3))
  return (jnp.concatenate([t0, t1 + t2], axis), jnp.concatenate([t0 + t1, t2], axis))


def upsample_conv3x3(lhs: jax.Array, rhs: jax.Array, window_strides, padding, lhs_dilation=None,
                     rhs_dilation=None, dimension_numbers=None, feature_group_count=1,
                     precision=None, **kwargs) -> jax.Array:
  """conv3x3(up(lhs), rhs) with 'SAME' padding; lax.conv_general_dilated's signature.

  So that `flax.linen.Conv(..., conv_general_dilated=upsample_conv3x3)` keeps the
  parameters and names of the plain convolution. Only the case the models use is
  accepted: a 3x3 kernel, stride 1, 'SAME', no dilation, one group.

  Args:
    lhs: [B, H, W, C_in] (NHWC), the image before upsampling.
    rhs: [3, 3, C_in, C_out] (HWIO).

  Returns:
    [B, 2H, 2W, C_out].
  """
  if (rhs.shape[:2] != (3, 3) or tuple(window_strides) != (1, 1) or padding != 'SAME'
      or any(d not in (None, 1, (1, 1)) for d in (lhs_dilation, rhs_dilation))
      or feature_group_count != 1 or kwargs.get('batch_group_count', 1) != 1):
    raise ValueError('upsample_conv3x3 takes a 3x3, stride-1, SAME, undilated, ungrouped '
                     f'convolution; got kernel {rhs.shape}, strides {window_strides}, '
                     f'padding {padding}')
  phases = []
  for i, rows in enumerate(_phase_taps(rhs, 0)):
    for j, kernel in enumerate(_phase_taps(rows, 1)):
      pad = ((1, 0) if i == 0 else (0, 1), (1, 0) if j == 0 else (0, 1))
      phases.append(weight_grad.conv_general_dilated(lhs, kernel, (1, 1), pad,
                                                     dimension_numbers=dimension_numbers,
                                                     precision=precision))
  b, h, w, c = phases[0].shape
  out = jnp.stack(phases, axis=3).reshape(b, h, w, 2, 2, c)   # [B, H, W, i, j, C]
  return out.transpose(0, 1, 3, 2, 4, 5).reshape(b, 2 * h, 2 * w, c)
