"""Datasets as pure functions of the step: digits, 2-D toys and TFDS images.

`get_dataset(config, split)` returns a `Dataset` whose `batch(step, batch_size)`
is a deterministic function of (config.seed, split, step, batch_size). The whole
data state of a run is therefore its step: a resumed run sees the same data,
and each process reads only its own slice of the global batch.

The stream has grain's `shuffle(seed).repeat()` semantics: global position g
holds example perm_e[g mod n] of epoch e = g // n, each epoch with its own
seeded permutation, so a batch may cross an epoch boundary. It is written in
numpy rather than with grain.MapDataset because grain's per-element Python path
(index_shuffle, per-element RNG reset, metrics) measured ~70 us per example:
~9 ms per 128-batch of 8x8 digits, as long as a small model's train step. The
vectorised index arithmetic below takes ~0.1 ms.

Values are in model space: images in [0, 1], or [-1, 1] if data.centered; toys
as generated. TFDS datasets are read without TensorFlow from local array_record
files; nothing here touches the network (see `_prepared_dir`). CelebA-HQ and
FFHQ are read from a folder of image files (`FOLDER_DATASETS`).
"""
import dataclasses
import functools
import json
import math
import os
import re
from typing import Callable, Iterator
import zlib

import jax
import ml_collections
import numpy as np
from PIL import Image

from errors import ConfigError, DataError, lookup
import photos
from toys import TOYS, sample_gmm, sample_gmm_labelled, toy_gmm_params  # noqa: F401  (re-exported)

SPLITS = ('train', 'test')
TOY_HELDOUT_SIZE = 10_000     # fixed evaluation set of every toy split
DIGITS_NUM_TRAIN = 1500       # of sklearn's 1797 digits; the other 297 are test
_DIGITS_SPLIT_SEED = 0        # fixed, independent of config.seed

# --------------------------------------------------------------------------
# Image preprocessing (score_sde's, on float32 [H, W, C] in [0, 1]).


def _resize(x: np.ndarray, h: int, w: int) -> np.ndarray:
  """Bilinear resize of [H, W, C] to [h, w, C]; antialiased when shrinking.

  PIL's bilinear filter widens with the shrink factor, like tf.image.resize
  with antialias=True that score_sde uses. Its weights are convex, so values
  stay in [0, 1]; the clip only removes float rounding.
  """
  if x.shape[:2] == (h, w):
    return x
  channels = [np.asarray(Image.fromarray(np.ascontiguousarray(x[..., c]))
                         .resize((w, h), Image.BILINEAR))
              for c in range(x.shape[-1])]
  return np.clip(np.stack(channels, -1), 0., 1.)


def _central_crop(x: np.ndarray, size: int) -> np.ndarray:
  top, left = (x.shape[0] - size) // 2, (x.shape[1] - size) // 2
  return x[top:top + size, left:left + size]


def _resize_small(x: np.ndarray, size: int) -> np.ndarray:
  """Resizes so that the shorter side is `size` (score_sde's resize_small)."""
  ratio = size / min(x.shape[:2])
  return _resize(x, round(x.shape[0] * ratio), round(x.shape[1] * ratio))


@dataclasses.dataclass(frozen=True)
class _TfdsSpec:
  channels: int
  test_split: str     # the TFDS split that our 'test' reads
  # ([H, W, C], size) -> [size, size, C]
  preprocess: Callable[[np.ndarray, int], np.ndarray]


def _square(x, size):
  return _resize(x, size, size)


def _celeba(x, size):   # score_sde: central crop 140 (of 218 x 178), then resize
  return _square(_central_crop(x, 140), size)


def _lsun(x, size):     # score_sde: shorter side to size, then centre crop
  return _central_crop(_resize_small(x, size), size)


# score_sde evaluates CelebA and LSUN on their 'validation' splits.
TFDS_DATASETS = {
    'mnist': _TfdsSpec(1, 'test', _square),
    'cifar10': _TfdsSpec(3, 'test', _square),
    'svhn_cropped': _TfdsSpec(3, 'test', _square),
    'celeb_a': _TfdsSpec(3, 'validation', _celeba),
    'lsun/<category>': _TfdsSpec(3, 'validation', _lsun),
}
# Datasets distributed as image files (FFHQ), or that TFDS builds only from a
# manual download (CelebA-HQ): read from a folder of image files, where
# score_sde read tfrecords it had made of them. A folder has no held-out split,
# so 'test' reads the same images (score_sde evaluates both on 'train' too).
FOLDER_DATASETS = ('celeb_a_hq', 'ffhq')
IMAGE_SUFFIXES = ('.png', '.jpg', '.jpeg', '.webp', '.bmp')
# Datasets with class labels (`Dataset.batch(..., with_labels=True)`): the number of classes.
# The gmm toy's label is its mixture component.
NUM_CLASSES = {'digits': 10, 'gmm': len(toy_gmm_params()[0])}
_KINDS = {'digits': 'digits', 'photo_crops': 'photos', **{n: 'toy' for n in TOYS},
          **{n: 'tfds' for n in TFDS_DATASETS}, **{n: 'folder' for n in FOLDER_DATASETS}}


def _prepared_dir(name: str, data_dir: str) -> str:
  """The local folder of a prepared array_record TFDS dataset, or DataError.

  Only the local file system is looked at. tfds.load / tfds.builder(name) would
  first look for the dataset on GCS, which offline retries for minutes; reading
  the folder found here with tfds.builder_from_directory needs no network.
  """
  root = os.path.join(data_dir, name)
  versions = []
  if os.path.isdir(root):
    versions = [v for v in os.listdir(root) if re.fullmatch(r'\d+\.\d+\.\d+', v)
                and os.path.isfile(os.path.join(root, v, 'dataset_info.json'))]
  if not versions:
    bundled = ', '.join(['digits', *TOYS])
    raise DataError(
        f'TFDS dataset {name!r} is not prepared in data_dir {data_dir!r} (no '
        f'{root}/<version>/dataset_info.json) and is never downloaded here; on a '
        f'machine with internet run `tfds build {name} --data_dir {data_dir} '
        f'--file_format=array_record` and copy the folder over, or use a bundled '
        f'dataset: {bundled}')
  latest = max(versions, key=lambda v: tuple(map(int, v.split('.'))))
  path = os.path.join(root, latest)
  with open(os.path.join(path, 'dataset_info.json')) as f:
    file_format = json.load(f).get('fileFormat', 'tfrecord')   # absent = tfrecord
  if file_format != 'array_record':
    raise DataError(
        f'TFDS dataset {name!r} in {path} is stored as {file_format}, which needs '
        f'TensorFlow to read; rebuild it with `tfds build {name} --data_dir '
        f'{data_dir} --file_format=array_record`')
  return path


class _TfdsExamples:
  """A TFDS split read by index: `examples[idx]` -> float32 [k, size, size, C] in [0, 1]."""

  def __init__(self, name: str, spec: _TfdsSpec, split: str, size: int,
               data_dir: str):
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
    data_dir = os.path.expanduser(
        data_dir or tfds.core.constants.get_default_data_dir())
    builder = tfds.builder_from_directory(_prepared_dir(name, data_dir))
    tfds_split = spec.test_split if split == 'test' else 'train'
    if tfds_split not in builder.info.splits:
      raise DataError(f'TFDS dataset {name!r} has no split {tfds_split!r}; it '
                      f'has {", ".join(builder.info.splits)}')
    self._source = builder.as_data_source(split=tfds_split)
    self._preprocess = functools.partial(spec.preprocess, size=size)

  def __len__(self) -> int:
    return len(self._source)

  def __getitem__(self, idx: np.ndarray) -> np.ndarray:
    examples = self._source.__getitems__([int(i) for i in idx])
    return np.stack([self._preprocess(ex['image'].astype(np.float32) / 255.)
                     for ex in examples]).astype(np.float32)


class _FolderExamples:
  """The image files under a folder, read by index: -> float32 [k, size, size, 3] in [0, 1].

  Files are sorted by relative path, so index i is the same file on every
  process and every run; each is converted to RGB, centre-cropped to a square
  and resized (a no-op for FFHQ / CelebA-HQ at their native sizes).
  """

  def __init__(self, name: str, folder: str, size: int):
    folder = os.path.expanduser(folder)
    if not folder or not os.path.isdir(folder):
      raise DataError(
          f'data.dataset={name!r} is read from a folder of image files, and data.data_dir='
          f'{folder!r} is not a directory; set --config.data.data_dir=/path/to/{name} '
          f'(PNG/JPEG files, any depth)')
    self._files = sorted(
        os.path.relpath(os.path.join(root, f), folder)
        for root, _, files in os.walk(folder, followlinks=True)
        for f in files if f.lower().endswith(IMAGE_SUFFIXES))
    if not self._files:
      raise DataError(f'data.data_dir={folder!r} holds no image files '
                      f'({", ".join(IMAGE_SUFFIXES)}) for data.dataset={name!r}')
    self._folder, self._size = folder, size

  def __len__(self) -> int:
    return len(self._files)

  def _read(self, i: int) -> np.ndarray:
    path = os.path.join(self._folder, self._files[i])
    try:
      with Image.open(path) as im:
        x = np.asarray(im.convert('RGB'), np.float32) / 255.
    except OSError as e:
      raise DataError(f'cannot read image {path}: {e}') from None
    return _square(_central_crop(x, min(x.shape[:2])), self._size)

  def __getitem__(self, idx: np.ndarray) -> np.ndarray:
    return np.stack([self._read(int(i)) for i in np.atleast_1d(idx)])


def digits(split: str, size: int) -> tuple[np.ndarray, np.ndarray]:
  """sklearn's 8x8 digits of one split: images float32 [N, size, size, 1] (v / 16), labels int32 [N].

  The split is fixed: a permutation drawn with seed 0 puts its first 1500
  digits in 'train' and the other 297 in 'test', whatever config.seed is.
  """
  from sklearn.datasets import load_digits  # pylint: disable=g-import-not-at-top
  bunch = load_digits()
  images = bunch.images.astype(np.float32) / 16.
  perm = np.random.default_rng(_DIGITS_SPLIT_SEED).permutation(len(images))
  idx = perm[:DIGITS_NUM_TRAIN] if split == 'train' else perm[DIGITS_NUM_TRAIN:]
  return (np.stack([_resize(im[:, :, None], size, size) for im in images[idx]]),
          bunch.target[idx].astype(np.int32))


def _digits_images(split: str, size: int) -> np.ndarray:
  return digits(split, size)[0]


def num_classes(config: ml_collections.ConfigDict) -> int:
  """The number of classes of config.data.dataset (ConfigError if it has no labels)."""
  name = config.data.dataset
  if name not in NUM_CLASSES:
    raise ConfigError(f'data.dataset={name!r} has no class labels; labelled datasets: '
                      f'{", ".join(NUM_CLASSES)}')
  return NUM_CLASSES[name]


# --------------------------------------------------------------------------
# Scalers, augmentation, seeds.


def _is_image(config: ml_collections.ConfigDict) -> bool:
  return config.data.dataset not in TOYS


def get_data_scaler(config: ml_collections.ConfigDict) -> Callable:
  """Maps images in [0, 1] to model space ([-1, 1] if data.centered); toys: identity."""
  if _is_image(config) and config.data.centered:
    return lambda x: x * 2. - 1.
  return lambda x: x


def get_data_inverse_scaler(config: ml_collections.ConfigDict) -> Callable:
  """Inverse of `get_data_scaler`: model space back to [0, 1] for images."""
  if _is_image(config) and config.data.centered:
    return lambda x: (x + 1.) / 2.
  return lambda x: x


def dequantize(x: np.ndarray, u: np.ndarray, levels: int) -> np.ndarray:
  """Uniform dequantization of x = v / (levels - 1) to (v + u) / levels.

  With u ~ U[0, 1) this is score_sde's (255 x + u) / 256 for 8-bit data
  (levels = 256). Digits have levels = 17: v / 16 -> (v + u) / 17, so
  E[(v + u) / 17] = (v + 1/2) / 17.
  """
  return (x * (levels - 1) + u) / levels


def _seed(config_seed: int, *tags: str) -> int:
  """A 32-bit seed from the config seed and string tags (crc32: stable, unlike hash)."""
  words = [int(config_seed) & 0xFFFFFFFF] + [zlib.crc32(t.encode()) for t in tags]
  return int(np.random.SeedSequence(words).generate_state(1)[0])


# --------------------------------------------------------------------------
# The Dataset.


class Dataset:
  """One split of a dataset, read as a pure function of the step.

  Attributes:
    data_shape: per-example shape, (H, W, C) for images, (D,) for toys.
    num_examples: size of the split; None for an infinite toy stream.
    is_image: whether examples are images.
  """

  def __init__(self, *, data_shape: tuple, examples, heldout, draw=None,
               flip: bool = False, levels: int = 0, scaler=None, seeds: dict,
               process_index: int, process_count: int, labels=None, draw_labelled=None):
    """Private; use `get_dataset`.

    Args:
      examples: the finite split, indexable by an int array -> [k, *data_shape]
        (an np.ndarray or _TfdsExamples), or None for an infinite stream.
      heldout: what `iterate` reads (examples, or a fixed toy set).
      draw: (step, n) -> [n, *data_shape] for an infinite toy stream.
      flip: random horizontal flips in `batch`.
      levels: quantization levels to dequantize with; 0 for none.
      scaler: [0, 1] -> model space for images; None for toys.
      seeds: 32-bit seeds 'shuffle', 'augment', 'eval'.
      labels: int32 [len(examples)] class labels of `examples`, or None.
      draw_labelled: (step, n) -> ([n, *data_shape], labels [n]) for a labelled
        infinite toy stream (the same points as `draw`).
    """
    self.data_shape = tuple(data_shape)
    self.is_image = scaler is not None
    self.num_examples = None if examples is None else len(examples)
    self._examples, self._heldout, self._draw = examples, heldout, draw
    self._flip, self.levels, self._scaler = flip, levels, scaler  # levels: 0 = not quantized
    self._seeds = seeds
    self._labels, self._draw_labelled = labels, draw_labelled
    self._process_index, self._process_count = process_index, process_count
    # A memo, not data state; lru_cache is thread-safe for prefetch threads.
    self._permutation = functools.lru_cache(maxsize=2)(self._new_permutation)

  def _local_size(self, batch_size: int, field: str) -> int:
    if batch_size <= 0 or batch_size % self._process_count:
      raise ConfigError(f'{field}={batch_size} must be a positive multiple of '
                        f'the process count {self._process_count}')
    return batch_size // self._process_count

  def _new_permutation(self, epoch: int) -> np.ndarray:
    rng = np.random.default_rng([self._seeds['shuffle'], epoch])
    return rng.permutation(self.num_examples)

  def _stream_indices(self, positions: np.ndarray) -> np.ndarray:
    """Example index at each global stream position: perm_e[g mod n], e = g // n."""
    epochs, offsets = np.divmod(positions, self.num_examples)
    out = np.empty_like(positions)
    for epoch in np.unique(epochs):
      sel = epochs == epoch
      out[sel] = self._permutation(int(epoch))[offsets[sel]]
    return out

  def batch(self, step: int, batch_size: int, with_labels: bool = False):
    """This process's slice of global batch number `step`.

    Args:
      step: global batch index; the data state of a run.
      batch_size: global batch size B over all processes.
      with_labels: also return the examples' class labels (labelled datasets only).

    Returns:
      float32 [B // P, *data_shape]: rows [p * b, (p + 1) * b) of the global
      batch for process p of P, b = B // P; with_labels: (that, int32 labels [B // P]).
    """
    b = self._local_size(batch_size, 'training.batch_size')
    rows = slice(self._process_index * b, (self._process_index + 1) * b)
    if with_labels and self._labels is None and self._draw_labelled is None:
      raise ConfigError(f'this dataset has no class labels; labelled datasets: '
                        f'{", ".join(NUM_CLASSES)}')
    if self._draw is not None:
      # Every process draws the whole global batch (cheap in 2-D) from the same
      # step seed and keeps its rows, so the batch ignores the process count.
      if with_labels:
        x, y = self._draw_labelled(step, batch_size)
        return x[rows].astype(np.float32), y[rows].astype(np.int32)
      return self._draw(step, batch_size)[rows].astype(np.float32)
    positions = np.arange(step * batch_size, (step + 1) * batch_size)[rows]
    idx = self._stream_indices(positions)
    if with_labels:
      return self.batch(step, batch_size), self._labels[idx].astype(np.int32)
    x = self._examples[idx]
    if not self.is_image:
      return x.astype(np.float32)
    # Flips and noise are drawn for the whole global batch from a step seed and
    # sliced, so they too ignore the process count. It costs each process B
    # noise images, small next to a train step at any image size.
    rng = np.random.default_rng([self._seeds['augment'], step])
    if self._flip:
      flip = (rng.random(batch_size) < 0.5)[rows]
      x = np.where(flip[:, None, None, None], x[:, :, ::-1], x)
    if self.levels:
      u = rng.random((batch_size, *self.data_shape), np.float32)[rows]
      x = dequantize(x, u, self.levels)
    return self._scaler(x).astype(np.float32)

  def iterate(self, batch_size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """One pass, in fixed order, over this process's shard of the split.

    Global batch k holds examples kB, ..., kB + B - 1 (padded past the end), and
    process p of P gets its rows p b, ..., p b + b - 1 (b = B // P), as `batch`
    does: the global batches, and so every per-row random draw of an evaluation,
    are the same for any P. Every process yields the same number of batches
    (collectives need that). Images are dequantized (if configured) with noise
    seeded by the example's index and never flipped. An infinite toy stream
    yields a fixed set of TOY_HELDOUT_SIZE draws instead.

    Args:
      batch_size: global batch size B over all processes.

    Yields:
      (x float32 [B // P, *data_shape], mask bool [B // P]); mask marks real
      examples.
    """
    b = self._local_size(batch_size, 'eval.batch_size')
    n = len(self._heldout)
    for k in range(math.ceil(n / batch_size)):
      start = k * batch_size + self._process_index * b
      idx = np.arange(start, min(start + b, n))
      x = np.zeros((b, *self.data_shape), np.float32)
      if len(idx):
        x[:len(idx)] = self._prepare_heldout(idx)
      yield x, np.arange(b) < len(idx)

  def heldout_examples(self, n: int) -> np.ndarray:
    """The first n examples of `iterate`'s pass, whole, on every process: [n, *data_shape]."""
    return self._prepare_heldout(np.arange(min(n, len(self._heldout))))

  def _prepare_heldout(self, idx: np.ndarray) -> np.ndarray:
    real = self._heldout[idx]
    if self.is_image and self.levels:
      u = np.stack([np.random.default_rng([self._seeds['eval'], i])
                    .random(self.data_shape, np.float32) for i in idx])
      real = dequantize(real, u, self.levels)
    return (self._scaler(real) if self.is_image else real).astype(np.float32)


def _toy_dataset(config, name, split, **kw) -> Dataset:
  dim = config.data.dim
  labelled = None
  if name == 'gmm':
    sampler = functools.partial(sample_gmm, dim=dim)
    labelled = functools.partial(sample_gmm_labelled, dim=dim)
  elif dim != 2:
    raise ConfigError(f'data.dim={dim} but the toy {name!r} is 2-D; only gmm '
                      'takes another dim')
  else:
    sampler = TOYS[name]

  def fixed(n, tag):
    rng = np.random.default_rng(_seed(config.seed, name, split, tag))
    return sampler(rng, n).astype(np.float32)

  def fixed_labels(n, tag):   # the same rng and draws as `fixed`
    if labelled is None:
      return None
    return labelled(np.random.default_rng(_seed(config.seed, name, split, tag)), n)[1]

  examples, draw, labels, draw_labelled = None, None, None, None
  if split == 'test' or config.data.num_train > 0:
    n = TOY_HELDOUT_SIZE if split == 'test' else config.data.num_train
    examples, labels = fixed(n, 'fixed'), fixed_labels(n, 'fixed')
  else:
    stream_seed = _seed(config.seed, name, split, 'stream')
    draw = lambda step, n: sampler(np.random.default_rng([stream_seed, step]), n)
    if labelled is not None:
      draw_labelled = lambda step, n: labelled(np.random.default_rng([stream_seed, step]), n)
  heldout = examples if examples is not None else fixed(TOY_HELDOUT_SIZE, 'heldout')
  return Dataset(data_shape=(dim,), examples=examples, heldout=heldout,
                 draw=draw, labels=labels, draw_labelled=draw_labelled, **kw)


def get_dataset(config: ml_collections.ConfigDict, split: str = 'train', *,
                process_index: int | None = None,
                process_count: int | None = None) -> Dataset:
  """Builds one split of config.data.dataset.

  Args:
    config: the experiment config (data.*, seed).
    split: 'train' or 'test'.
    process_index: this process; defaults to jax.process_index().
    process_count: number of processes; defaults to jax.process_count().

  Returns:
    The Dataset; see its `batch` and `iterate`.

  Raises:
    ConfigError: unknown dataset or split, or a field that does not fit it.
    DataError: a TFDS dataset that is not prepared locally as array_record, or an
      image-folder dataset whose data.data_dir holds no images.
  """
  if split not in SPLITS:
    raise ConfigError(f'split={split!r} is unknown; valid: {", ".join(SPLITS)}')
  process_index = jax.process_index() if process_index is None else process_index
  process_count = jax.process_count() if process_count is None else process_count
  if not 0 <= process_index < process_count:
    raise ConfigError(f'process_index={process_index} is not in [0, {process_count})')
  name = config.data.dataset
  key = 'lsun/<category>' if name.startswith('lsun/') else name
  kind = lookup(_KINDS, key, 'data.dataset')
  seeds = {tag: _seed(config.seed, name, split, tag)
           for tag in ('shuffle', 'augment', 'eval')}
  kw = dict(seeds=seeds, process_index=process_index, process_count=process_count)
  if kind == 'toy':
    return _toy_dataset(config, name, split, **kw)

  size, channels = config.data.image_size, config.data.num_channels
  want, levels = ((1, 17) if kind == 'digits' else (3, 256) if kind in ('folder', 'photos')
                  else (TFDS_DATASETS[key].channels, 256))
  if size <= 0:
    raise ConfigError(f'data.image_size={size} must be positive')
  if channels != want:
    raise ConfigError(f'data.num_channels={channels} but {name!r} has {want}')
  labels = None
  if kind == 'digits':
    examples, labels = digits(split, size)
  elif kind == 'photos':
    if size > photos.max_size():
      raise ConfigError(f'data.image_size={size} is too large for photo_crops; use at most '
                        f'{photos.max_size()} (16 is the default)')
    examples = photos.photo_crops(split, size)
  elif kind == 'folder':
    examples = _FolderExamples(name, config.data.data_dir, size)
  else:
    examples = _TfdsExamples(name, TFDS_DATASETS[key], split, size,
                             config.data.data_dir)
  return Dataset(
      data_shape=(size, size, channels), examples=examples, heldout=examples,
      flip=config.data.random_flip and split == 'train',
      levels=levels if config.data.uniform_dequantization else 0,
      scaler=get_data_scaler(config), labels=labels, **kw)
