"""2-D max and mean pooling as two 1-D passes (NCSN's CRP blocks, the FID Inception).

The max, and the mean, over a rectangle of pixels is the max (mean) over its rows of the
max (mean) over each row, so a kh x kw window is a kh x 1 window followed by a 1 x kw one:
the max's value is bitwise the same, the mean's equal to float32 rounding. Padding splits
per axis, and so does the count of real pixels that an average without the padding
divides by, which is the product of the two axes' counts.

Why: XLA:CPU runs 2-D `reduce_window`s, and the max's gradient (`select_and_scatter`)
most of all, far below the speed of two 1-D ones. NCSN's 5 x 5 max pool at
[16, 32, 32, 32] takes 4.5 ms against 0.35 ms in two passes, with its gradient 41 ms
against 9.8 ms (benchmarks/pooling.py), and a NCSNv2 (nf 32) train step is 1.32-1.36x
faster (benchmarks/weight_grad.py --change pooling; docs/performance.md). The max's
gradient goes to a window's largest entry in both forms; only between tied entries may
the two pick differently, both valid subgradients.
"""
import contextlib
from typing import Callable, Sequence, Union

import jax

Padding = Union[str, Sequence[Sequence[int]]]

_ONE_WINDOW = False   # set by `one_window_pools`, for A/B benchmarks


def separable_pool(pool: Callable, x: jax.Array, window: Sequence[int],
                   strides: Sequence[int] = (1, 1), padding: Padding = 'VALID',
                   **kwargs) -> jax.Array:
  """`pool(x, window, strides, padding, **kwargs)` over [B, H, W, C] in two 1-D passes.

  Args:
    pool: flax's `nn.max_pool` or `nn.avg_pool` (kwargs: e.g. `count_include_pad`).
    x: [B, H, W, C].
    window, strides: (kh, kw), (sh, sw).
    padding: 'SAME', 'VALID' or ((top, bottom), (left, right)).
  """
  (kh, kw), (sh, sw) = window, strides
  if _ONE_WINDOW:
    return pool(x, (kh, kw), strides=(sh, sw), padding=padding, **kwargs)
  if isinstance(padding, str):
    pad_h = pad_w = padding
  else:
    pad_h, pad_w = (tuple(padding[0]), (0, 0)), ((0, 0), tuple(padding[1]))
  x = pool(x, (kh, 1), strides=(sh, 1), padding=pad_h, **kwargs)
  return pool(x, (1, kw), strides=(1, sw), padding=pad_w, **kwargs)


@contextlib.contextmanager
def one_window_pools():
  """Within this block, `separable_pool` traces the one 2-D window it replaces.

  For A/B benchmarks (benchmarks/pooling.py, benchmarks/weight_grad.py --change pooling):
  the switch is read at trace time, so trace (jit-lower) inside the block.
  """
  global _ONE_WINDOW
  saved, _ONE_WINDOW = _ONE_WINDOW, True
  try:
    yield
  finally:
    _ONE_WINDOW = saved
