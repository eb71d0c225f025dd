"""Inception-v3 as used for FID, KID and Inception Score, in Flax.

This is the "FID Inception": the graph of TensorFlow's inception-2015-12-05
that TTUR's FID code, score_sde (via TF-GAN) and pytorch-fid all evaluate. In
PyTorch terms it is torchvision's Inception3(num_classes=1008, aux_logits=False)
with pytorch-fid's patched blocks FIDInceptionA/C/E_1 (3x3 average pools that
do not count the zero padding, as TensorFlow's) and FIDInceptionE_2 (a 3x3 max
pool in the pool branch of Mixed_7c, a quirk of the TF graph).

Submodules carry torchvision's names (Conv2d_1a_3x3, Mixed_5b/branch1x1, ...,
each BasicConv2d as `conv` + `bn`, and `fc`), so a PyTorch state dict maps onto
the Flax variables name by name; see tools/convert_inception_weights.py.

Parameter count: torchvision documents 27,161,264 parameters for Inception3
with the aux head and 1000 classes (Inception_V3_Weights.IMAGENET1K_V1,
num_params). Without the aux head (conv 768->128 1x1 + BN, conv 128->768 5x5 +
BN, fc 768->1000: 3,326,696) and with a 1008-way fc (+8 x 2049) that is
23,850,960 trainable parameters; BatchNorm running statistics are buffers in
PyTorch and `batch_stats` here, and are not counted.

Weights file: an .npz whose keys are the flattened Flax variable paths,
'params/Mixed_5b/branch1x1/conv/kernel', 'batch_stats/Mixed_5b/branch1x1/bn/mean',
... (`save_variables` / `load_variables`).
"""
from __future__ import annotations

import os
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from errors import CheckpointError
from models.pooling import separable_pool

INPUT_SIZE = 299
NUM_FEATURES = 2048       # pool3
NUM_CLASSES = 1008        # the 2015-12-05 graph's softmax width
# torchvision's documented 27,161,264 minus the aux head, with a 1008-way fc.
NUM_PARAMS = 27_161_264 - 3_326_696 + 8 * (NUM_FEATURES + 1)   # 23,850,960
_BN_EPS = 1e-3            # torchvision BasicConv2d's BatchNorm2d(eps=0.001)


class BasicConv(nn.Module):
  """Conv (no bias) -> BatchNorm (inference statistics) -> ReLU."""
  features: int
  kernel: Sequence[int]
  stride: int = 1
  padding: Sequence[int] = (0, 0)

  @nn.compact
  def __call__(self, x):
    ph, pw = self.padding
    x = nn.Conv(self.features, tuple(self.kernel), strides=(self.stride,) * 2,
                padding=((ph, ph), (pw, pw)), use_bias=False, name='conv')(x)
    x = nn.BatchNorm(use_running_average=True, epsilon=_BN_EPS, name='bn')(x)
    return nn.relu(x)


# The pools run as two 1-D windows each (models/pooling.py): the same max, the same
# mean to float32 rounding; Inception's forward pass at batch 16 is 5% faster on XLA:CPU
# (benchmarks/pooling.py).
def _avg_pool_3x3(x):
  # TensorFlow's average pool divides by the number of real (unpadded) pixels.
  return separable_pool(nn.avg_pool, x, (3, 3), padding=((1, 1), (1, 1)),
                        count_include_pad=False)


def _max_pool_3x3(x, stride=1, padding=((1, 1), (1, 1))):
  return separable_pool(nn.max_pool, x, (3, 3), strides=(stride, stride), padding=padding)


def _max_pool_3x3_s2(x):
  return _max_pool_3x3(x, stride=2, padding='VALID')


class InceptionA(nn.Module):
  pool_features: int

  @nn.compact
  def __call__(self, x):
    b1 = BasicConv(64, (1, 1), name='branch1x1')(x)
    b5 = BasicConv(48, (1, 1), name='branch5x5_1')(x)
    b5 = BasicConv(64, (5, 5), padding=(2, 2), name='branch5x5_2')(b5)
    b3 = BasicConv(64, (1, 1), name='branch3x3dbl_1')(x)
    b3 = BasicConv(96, (3, 3), padding=(1, 1), name='branch3x3dbl_2')(b3)
    b3 = BasicConv(96, (3, 3), padding=(1, 1), name='branch3x3dbl_3')(b3)
    bp = BasicConv(self.pool_features, (1, 1), name='branch_pool')(_avg_pool_3x3(x))
    return jnp.concatenate([b1, b5, b3, bp], -1)


class InceptionB(nn.Module):

  @nn.compact
  def __call__(self, x):
    b3 = BasicConv(384, (3, 3), stride=2, name='branch3x3')(x)
    bd = BasicConv(64, (1, 1), name='branch3x3dbl_1')(x)
    bd = BasicConv(96, (3, 3), padding=(1, 1), name='branch3x3dbl_2')(bd)
    bd = BasicConv(96, (3, 3), stride=2, name='branch3x3dbl_3')(bd)
    return jnp.concatenate([b3, bd, _max_pool_3x3_s2(x)], -1)


class InceptionC(nn.Module):
  channels_7x7: int

  @nn.compact
  def __call__(self, x):
    c = self.channels_7x7
    b1 = BasicConv(192, (1, 1), name='branch1x1')(x)
    b7 = BasicConv(c, (1, 1), name='branch7x7_1')(x)
    b7 = BasicConv(c, (1, 7), padding=(0, 3), name='branch7x7_2')(b7)
    b7 = BasicConv(192, (7, 1), padding=(3, 0), name='branch7x7_3')(b7)
    bd = BasicConv(c, (1, 1), name='branch7x7dbl_1')(x)
    bd = BasicConv(c, (7, 1), padding=(3, 0), name='branch7x7dbl_2')(bd)
    bd = BasicConv(c, (1, 7), padding=(0, 3), name='branch7x7dbl_3')(bd)
    bd = BasicConv(c, (7, 1), padding=(3, 0), name='branch7x7dbl_4')(bd)
    bd = BasicConv(192, (1, 7), padding=(0, 3), name='branch7x7dbl_5')(bd)
    bp = BasicConv(192, (1, 1), name='branch_pool')(_avg_pool_3x3(x))
    return jnp.concatenate([b1, b7, bd, bp], -1)


class InceptionD(nn.Module):

  @nn.compact
  def __call__(self, x):
    b3 = BasicConv(192, (1, 1), name='branch3x3_1')(x)
    b3 = BasicConv(320, (3, 3), stride=2, name='branch3x3_2')(b3)
    b7 = BasicConv(192, (1, 1), name='branch7x7x3_1')(x)
    b7 = BasicConv(192, (1, 7), padding=(0, 3), name='branch7x7x3_2')(b7)
    b7 = BasicConv(192, (7, 1), padding=(3, 0), name='branch7x7x3_3')(b7)
    b7 = BasicConv(192, (3, 3), stride=2, name='branch7x7x3_4')(b7)
    return jnp.concatenate([b3, b7, _max_pool_3x3_s2(x)], -1)


class InceptionE(nn.Module):
  """Mixed_7b (average pool, FIDInceptionE_1) or Mixed_7c (max pool, E_2)."""
  max_pool: bool = False

  @nn.compact
  def __call__(self, x):
    b1 = BasicConv(320, (1, 1), name='branch1x1')(x)
    b3 = BasicConv(384, (1, 1), name='branch3x3_1')(x)
    b3 = jnp.concatenate([
        BasicConv(384, (1, 3), padding=(0, 1), name='branch3x3_2a')(b3),
        BasicConv(384, (3, 1), padding=(1, 0), name='branch3x3_2b')(b3)], -1)
    bd = BasicConv(448, (1, 1), name='branch3x3dbl_1')(x)
    bd = BasicConv(384, (3, 3), padding=(1, 1), name='branch3x3dbl_2')(bd)
    bd = jnp.concatenate([
        BasicConv(384, (1, 3), padding=(0, 1), name='branch3x3dbl_3a')(bd),
        BasicConv(384, (3, 1), padding=(1, 0), name='branch3x3dbl_3b')(bd)], -1)
    if self.max_pool:
      pooled = _max_pool_3x3(x)
    else:
      pooled = _avg_pool_3x3(x)
    bp = BasicConv(192, (1, 1), name='branch_pool')(pooled)
    return jnp.concatenate([b1, b3, bd, bp], -1)


def preprocess(x: jax.Array) -> jax.Array:
  """Images [B, H, W, C in {1, 3}] in [0, 1] -> the network's input [B, 299, 299, 3] in [-1, 1].

  Bilinear resize with half-pixel centres and no antialiasing, i.e. PyTorch's
  interpolate(mode='bilinear', align_corners=False) that pytorch-fid uses.
  """
  x = jnp.asarray(x, jnp.float32)
  if x.shape[-1] == 1:
    x = jnp.repeat(x, 3, axis=-1)
  if x.shape[1:3] != (INPUT_SIZE, INPUT_SIZE):
    x = jax.image.resize(x, (x.shape[0], INPUT_SIZE, INPUT_SIZE, 3), 'bilinear',
                         antialias=False)
  return 2. * x - 1.


class FIDInceptionV3(nn.Module):
  """Images in [0, 1] -> (pool3 features, logits).

  Call with x float [B, H, W, C], C in {1, 3}, values in [0, 1]; see
  `preprocess` (grey images are repeated to 3 channels, everything is resized
  to 299 x 299 and mapped to [-1, 1]).

  Returns:
    (features float32 [B, 2048], logits float32 [B, 1008]).
  """

  @nn.compact
  def __call__(self, x):
    x = preprocess(x)
    x = BasicConv(32, (3, 3), stride=2, name='Conv2d_1a_3x3')(x)
    x = BasicConv(32, (3, 3), name='Conv2d_2a_3x3')(x)
    x = BasicConv(64, (3, 3), padding=(1, 1), name='Conv2d_2b_3x3')(x)
    x = _max_pool_3x3_s2(x)
    x = BasicConv(80, (1, 1), name='Conv2d_3b_1x1')(x)
    x = BasicConv(192, (3, 3), name='Conv2d_4a_3x3')(x)
    x = _max_pool_3x3_s2(x)
    x = InceptionA(32, name='Mixed_5b')(x)
    x = InceptionA(64, name='Mixed_5c')(x)
    x = InceptionA(64, name='Mixed_5d')(x)
    x = InceptionB(name='Mixed_6a')(x)
    x = InceptionC(128, name='Mixed_6b')(x)
    x = InceptionC(160, name='Mixed_6c')(x)
    x = InceptionC(160, name='Mixed_6d')(x)
    x = InceptionC(192, name='Mixed_6e')(x)
    x = InceptionD(name='Mixed_7a')(x)
    x = InceptionE(name='Mixed_7b')(x)
    x = InceptionE(max_pool=True, name='Mixed_7c')(x)
    features = jnp.mean(x, axis=(1, 2))           # adaptive average pool -> pool3
    logits = nn.Dense(NUM_CLASSES, name='fc')(features)   # dropout is off at eval
    return features, logits


def variable_shapes(model: nn.Module | None = None) -> dict:
  """The model's variables as ShapeDtypeStructs, without computing anything."""
  model = model or FIDInceptionV3()
  x = jax.ShapeDtypeStruct((1, INPUT_SIZE, INPUT_SIZE, 3), jnp.float32)
  return jax.eval_shape(model.init, jax.random.PRNGKey(0), x)


def random_variables(seed: int = 0) -> dict:
  """Random variables of the right shapes (tests and timings; real use loads a file).

  Kernels are He-normal (std sqrt(2 / fan_in)) and BatchNorm is the identity
  (scale 1, bias 0, mean 0, var 1), so activations keep an O(1) scale through
  the ReLU stack. Drawn with numpy from `variable_shapes`: jitting model.init
  instead costs ~20 s of XLA:CPU compile.
  """
  rng = np.random.default_rng(seed)
  flat = traverse_util.flatten_dict(variable_shapes(), sep='/')
  out = {}
  for name, s in flat.items():
    leaf = name.rsplit('/', 1)[1]
    if leaf == 'kernel':
      fan_in = int(np.prod(s.shape[:-1]))
      out[name] = rng.normal(0., np.sqrt(2. / fan_in), s.shape)
    elif leaf in ('scale', 'var'):
      out[name] = np.ones(s.shape)
    else:   # bias, mean
      out[name] = np.zeros(s.shape)
  return traverse_util.unflatten_dict(
      {k: v.astype(np.float32) for k, v in out.items()}, sep='/')


def flatten(variables: dict) -> dict[str, np.ndarray]:
  """{'params': {...}, 'batch_stats': {...}} -> {'params/a/b/kernel': array}."""
  return {k: np.asarray(v) for k, v in
          traverse_util.flatten_dict(jax.device_get(variables), sep='/').items()}


def save_variables(path: str, variables: dict) -> None:
  """Writes the variables as an .npz of flattened paths (see module docstring)."""
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(path, 'wb') as f:   # a file object: np.savez would append '.npz'
    np.savez(f, **flatten(variables))


def load_variables(path: str) -> dict:
  """Reads an .npz written by `save_variables` or the converter, checked.

  Raises:
    CheckpointError: the file is unreadable, or its names or shapes do not
      match FIDInceptionV3.
  """
  fix = ('produce it with `python tools/convert_inception_weights.py --src '
         'pt_inception-2015-12-05-6726825d.pth --out inception_fid.npz`')
  try:
    with np.load(path) as f:
      flat = {k: f[k] for k in f.files}
  except (OSError, ValueError) as e:
    raise CheckpointError(f'cannot read Inception weights {path}: {e}; {fix}') from None
  want = {k: v.shape for k, v in
          traverse_util.flatten_dict(variable_shapes(), sep='/').items()}
  missing = sorted(set(want) - set(flat))
  extra = sorted(set(flat) - set(want))
  bad = sorted(k for k in set(want) & set(flat) if flat[k].shape != want[k])
  if missing or extra or bad:
    detail = (f'missing {missing[:3]}' if missing else
              f'unexpected {extra[:3]}' if extra else
              f'shape of {bad[0]} is {flat[bad[0]].shape}, want {want[bad[0]]}')
    raise CheckpointError(f'Inception weights {path} do not fit the FID '
                          f'Inception-v3 ({detail}); {fix}')
  flat = {k: v.astype(np.float32) for k, v in flat.items()}
  return traverse_util.unflatten_dict(flat, sep='/')


def count_params(variables: dict) -> int:
  """Number of trainable parameters (the 'params' collection)."""
  return sum(int(np.prod(v.shape)) for v in jax.tree.leaves(variables['params']))
