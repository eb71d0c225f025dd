"""The two ends of the bridge: pi_0 (data, grid point 0) and pi_1 (prior, grid point N).

An endpoint is anything with `batch(step, n)` (this process's rows of global batch
`step` of size n, as `datasets.Dataset.batch`), `heldout(n)` (n held-out examples, the
same on every process), `data_shape` and `is_image`: a dataset of `datasets.get_dataset` (the 2-D toys, digits, TFDS), or one
of two DSB-side sources:

- `gaussian`: N(mean 1, var I), for the Gaussian-to-Gaussian benchmark and as prior;
- `letters`: 8 x 8 upper-case letters rendered locally with Pillow's bundled font.
  Digits -> letters is the small-scale analogue of DSB's EMNIST -> MNIST transfer
  (De Bortoli et al. 2021, Sec. 5.2): same size, same 17 grey levels (v / 16), same
  kind of content (centred pen strokes filling the frame), different classes. Nothing
  is downloaded, and both sets have the same size (1500 train / 297 test).
"""
from __future__ import annotations

import functools
import string

import numpy as np

import datasets
import parallel
from errors import ConfigError

LETTERS_NUM_TRAIN, LETTERS_NUM_TEST = datasets.DIGITS_NUM_TRAIN, 297
_LETTERS_SEED = 1


def _my_rows(x: np.ndarray) -> np.ndarray:
  """This process's rows of a global batch that every process drew in full."""
  return x[parallel.local_rows(len(x))]


class GaussianEndpoint:
  """N(mean 1, var I) over `data_shape`, drawn from (seed, tag, step)."""

  is_image = False

  def __init__(self, data_shape: tuple, mean: float, var: float, seed: int, tag: str):
    if var <= 0:
      raise ConfigError(f'the {tag} Gaussian needs a positive variance, got {var}; set '
                        f'dsb.{tag}_var')
    self.data_shape, self.mean, self.std = tuple(data_shape), mean, float(np.sqrt(var))
    self._seed = datasets._seed(seed, 'dsb', tag)  # pylint: disable=protected-access

  def _draw(self, words, n):
    rng = np.random.default_rng(words)
    return (self.mean + self.std * rng.standard_normal((n, *self.data_shape))).astype(np.float32)

  def batch(self, step: int, n: int) -> np.ndarray:
    return _my_rows(self._draw([self._seed, step], n))

  def heldout(self, n: int) -> np.ndarray:
    return self._draw([self._seed, 2**31 - 1], n)   # a stream position batch() never uses


@functools.lru_cache(maxsize=2)
def letters_images(split: str, size: int = 8) -> np.ndarray:
  """[n, size, size, 1] float32 letters in [0, 1] on 17 levels, like sklearn's digits.

  Each image: one of 26 capitals, at a random font size, shift, rotation (+-12 deg) and
  stroke weight, rendered at 32 x 32 and box-filtered to size x size (as sklearn's
  digits were made: 32 x 32 bitmaps counted in 4 x 4 blocks).
  """
  from PIL import Image, ImageDraw, ImageFont  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(_LETTERS_SEED)
  n = LETTERS_NUM_TRAIN + LETTERS_NUM_TEST
  fonts = {s: ImageFont.load_default(size=s) for s in range(22, 31, 2)}
  out = np.empty((n, size, size, 1), np.float32)
  for i in range(n):
    letter = string.ascii_uppercase[rng.integers(26)]
    font = fonts[int(rng.choice(list(fonts)))]
    img = Image.new('L', (32, 32), 0)
    draw = ImageDraw.Draw(img)
    left, top, right, bottom = draw.textbbox((0, 0), letter, font=font)
    pos = (16 - (left + right) / 2 + rng.uniform(-1.5, 1.5),
           16 - (top + bottom) / 2 + rng.uniform(-1.5, 1.5))
    draw.text(pos, letter, fill=255, font=font, stroke_width=int(rng.integers(1, 3)),
              stroke_fill=255)
    img = img.rotate(rng.uniform(-12., 12.), resample=Image.BILINEAR)
    small = np.asarray(img.resize((size, size), Image.BOX), np.float32) / 255.
    out[i, :, :, 0] = np.round(small * 16.) / 16.
  return out[:LETTERS_NUM_TRAIN] if split == 'train' else out[LETTERS_NUM_TRAIN:]


class ArrayEndpoint:
  """A fixed image array, read through `datasets`' [0, 1] -> model-space scaler."""

  is_image = True

  def __init__(self, train: np.ndarray, test: np.ndarray, scaler, seed: int, tag: str):
    self._train, self._test, self._scaler = train, test, scaler
    self.data_shape = train.shape[1:]
    self._seed = datasets._seed(seed, 'dsb', tag)  # pylint: disable=protected-access

  def batch(self, step: int, n: int) -> np.ndarray:
    idx = np.random.default_rng([self._seed, step]).integers(len(self._train), size=n)
    return self._scaler(self._train[_my_rows(idx)]).astype(np.float32)

  def heldout(self, n: int) -> np.ndarray:
    return self._scaler(self._test[:n]).astype(np.float32)


class DatasetEndpoint:
  """A `datasets.Dataset` (toys, digits, TFDS)."""

  def __init__(self, ds: datasets.Dataset):
    self._ds, self.data_shape, self.is_image = ds, ds.data_shape, ds.is_image
    self._test = None

  def batch(self, step: int, n: int) -> np.ndarray:
    return self._ds.batch(step, n)

  def heldout(self, n: int) -> np.ndarray:
    return self._ds.heldout_examples(n)


def get_endpoint(config, name: str, tag: str, data_shape: tuple | None = None):
  """Builds an endpoint by name; `tag` is 'data' or 'prior' (names the config fields).

  Args:
    name: 'gaussian', 'letters' or a `datasets.get_dataset` name.
    data_shape: the other end's shape, required for a Gaussian prior.
  """
  d = config.dsb
  if name == 'gaussian':
    data_shape = (config.data.dim,) if data_shape is None else data_shape
    return GaussianEndpoint(data_shape, getattr(d, f'{tag}_mean'), getattr(d, f'{tag}_var'),
                            config.seed, tag)
  sub = config.copy_and_resolve_references()
  with sub.unlocked():
    sub.data.dataset = name
  if name == 'letters':
    if config.data.num_channels != 1:
      raise ConfigError(f'letters are grey: data.num_channels={config.data.num_channels} must be 1')
    scaler = datasets.get_data_scaler(config)
    size = config.data.image_size
    return ArrayEndpoint(letters_images('train', size), letters_images('test', size), scaler,
                         config.seed, tag)
  return DatasetEndpoint(datasets.get_dataset(sub, 'train'))


def get_endpoints(config):
  """(pi_0 endpoint, pi_1 endpoint) from data.dataset and dsb.prior; shapes must agree."""
  data = get_endpoint(config, config.data.dataset, 'data')
  prior = get_endpoint(config, config.dsb.prior, 'prior', data.data_shape)
  if tuple(prior.data_shape) != tuple(data.data_shape):
    raise ConfigError(f'dsb.prior={config.dsb.prior!r} has shape {tuple(prior.data_shape)} but '
                      f'data.dataset={config.data.dataset!r} has {tuple(data.data_shape)}')
  return data, prior
