"""`photo_crops`: a small colour image dataset cut from scikit-learn's two bundled photographs.

scikit-learn ships `china.jpg` and `flower.jpg` (427 x 640 RGB) inside the
package (`sklearn.datasets.load_sample_images`), so nothing is downloaded. Each
photo is shrunk by PHOTO_SCALE (to 107 x 160) and cut into size x size crops:

- train: crops lying wholly in the left TRAIN_FRACTION of each photo's columns,
  at stride 2 (heavily overlapping: 4,232 crops at size 16, 5,000 at size 8);
- test: crops lying wholly in the remaining right part, at stride size / 2
  (120 crops at size 16, 600 at size 8). No test pixel is in any training crop.

Why it is a fair test of colorization: these are real photographs, whose chroma
is correlated with, but not determined by, their gray structure (sky, foliage,
roof tiles, petals), so a colorizer must learn a colour prior from data; the test
crops are regions of the photos that training never saw, and the "mean colour"
baseline (the gray image with the training split's mean chroma) measures what
knowing only the average colour gives. Its limit: two scenes, so the test
measures generalisation within those scenes' palettes, not across scenes.
"""
from __future__ import annotations

import functools

import numpy as np
from PIL import Image

PHOTO_SCALE = 4          # 427 x 640 -> 107 x 160
TRAIN_FRACTION = 2 / 3   # columns [0, 2/3 W) train, [2/3 W, W) test
TRAIN_STRIDE = 2


@functools.lru_cache(maxsize=1)
def _photos() -> tuple[np.ndarray, ...]:
  """The two photographs shrunk by PHOTO_SCALE: float32 [H, W, 3] in [0, 1] each."""
  from sklearn.datasets import load_sample_images  # pylint: disable=g-import-not-at-top
  out = []
  for im in load_sample_images().images:
    h, w = im.shape[0] // PHOTO_SCALE, im.shape[1] // PHOTO_SCALE
    # PIL's bilinear filter widens when shrinking (antialiased, as datasets._resize).
    small = Image.fromarray(im).resize((w, h), Image.BILINEAR)
    out.append(np.asarray(small, np.float32) / 255.)
  return tuple(out)


def _crops(x: np.ndarray, size: int, col0: int, col1: int, stride: int) -> list[np.ndarray]:
  """Every size x size crop of x whose columns lie in [col0, col1), on a stride grid."""
  rows = range(0, x.shape[0] - size + 1, stride)
  cols = range(col0, col1 - size + 1, stride)
  return [x[r:r + size, c:c + size] for r in rows for c in cols]


@functools.lru_cache(maxsize=4)
def photo_crops(split: str, size: int) -> np.ndarray:
  """The crops of one split: float32 [N, size, size, 3] in [0, 1], in a fixed order.

  Raises:
    ValueError: a size too large for the test region (the caller checks first).
  """
  out = []
  for x in _photos():
    cut = int(round(x.shape[1] * TRAIN_FRACTION))
    if split == 'train':
      out += _crops(x, size, 0, cut, TRAIN_STRIDE)
    else:
      out += _crops(x, size, cut, x.shape[1], max(1, size // 2))
  if not out:
    raise ValueError(f'no {size}x{size} crops fit the {split} region')
  arr = np.stack(out).astype(np.float32)
  arr.setflags(write=False)
  return arr


def max_size() -> int:
  """The largest crop size that the test region (the narrower one) holds."""
  return min(min(x.shape[0], x.shape[1] - int(round(x.shape[1] * TRAIN_FRACTION)))
             for x in _photos())
