"""Converts pytorch-fid's FID Inception weights to the .npz that metrics.py loads.

The source is pytorch-fid's `pt_inception-2015-12-05-6726825d.pth` (a PyTorch
state dict of TensorFlow's inception-2015-12-05 graph, the network of FID), from
https://github.com/mseitzer/pytorch-fid/releases/tag/fid_weights.

No torch needed (it is not a dependency of this project):

    python tools/convert_inception_weights.py \
        --src pt_inception-2015-12-05-6726825d.pth --out inception_fid.npz

`read_torch_state_dict` reads a state dict written by torch.save, in the zip
format (torch >= 1.6) and in the legacy format (earlier torch, as the 2019 .pth
may be), with a restricted unpickler that only rebuilds tensors and dicts (it
runs none of the file's code). A state dict dumped to .npz (name -> array) works
too: `--src pt_inception.npz`. Then evaluate with
`--config.eval.inception_path=inception_fid.npz`.

The conversion is verified against pytorch-fid's FIDInceptionV3 itself by
`make check-inception` (tools/verify_inception.py; docs/evaluation.md).
"""
from __future__ import annotations

import argparse
import collections
import os
import pickle
import sys
import zipfile
from typing import Mapping

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# PyTorch name suffix -> (Flax collection, Flax leaf name).
_LEAVES = {
    'conv.weight': ('params', 'conv/kernel'),
    'bn.weight': ('params', 'bn/scale'),
    'bn.bias': ('params', 'bn/bias'),
    'bn.running_mean': ('batch_stats', 'bn/mean'),
    'bn.running_var': ('batch_stats', 'bn/var'),
}


def convert_state_dict(state: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
  """torchvision-named FID Inception state dict -> flattened Flax variables.

  Conv weights [O, I, kh, kw] become kernels [kh, kw, I, O]; the fc weight
  [1008, 2048] becomes a kernel [2048, 1008]; BatchNorm's weight/bias are the
  Flax scale/bias and its running statistics go to 'batch_stats'.

  Args:
    state: PyTorch parameter name -> array.

  Returns:
    'params/...' and 'batch_stats/...' paths -> float32 arrays, as
    models.inception.load_variables reads them.

  Raises:
    ValueError: a name that is not part of the FID Inception.
  """
  out = {}
  for name, value in state.items():
    value = np.asarray(value)
    if name.endswith('num_batches_tracked'):
      continue                                # a training counter, not a weight
    if name in ('fc.weight', 'fc.bias'):
      leaf = 'kernel' if name == 'fc.weight' else 'bias'
      out[f'params/fc/{leaf}'] = value.T if leaf == 'kernel' else value
      continue
    parts = name.split('.')
    path, key = parts[:-2], '.'.join(parts[-2:])   # 'Mixed_5b.branch1x1', 'conv.weight'
    if key not in _LEAVES or not path or not path[0].startswith(('Conv2d_', 'Mixed_')):
      raise ValueError(f'{name!r} is not a parameter of the FID Inception-v3')
    collection, flax_leaf = _LEAVES[key]
    if key == 'conv.weight':
      value = value.transpose(2, 3, 1, 0)
    out[f'{collection}/{"/".join(path)}/{flax_leaf}'] = value
  return {k: v.astype(np.float32) for k, v in out.items()}


# torch storage class names -> numpy dtypes (torch writes little-endian data).
_STORAGE_DTYPES = {
    'FloatStorage': '<f4', 'DoubleStorage': '<f8', 'HalfStorage': '<f2', 'LongStorage': '<i8',
    'IntStorage': '<i4', 'ShortStorage': '<i2', 'CharStorage': 'i1', 'ByteStorage': 'u1',
    'BoolStorage': '?',
}
_LEGACY_MAGIC = 0x1950a86a20f9469cfc6c


class _StorageType(str):
  """What the unpickler returns for torch.FloatStorage and friends: just the name."""


def _rebuild_tensor(storage, offset, size, stride, *unused):
  """torch._utils._rebuild_tensor_v2 on a flat numpy storage: the strided view, copied."""
  del unused   # requires_grad, backward hooks, metadata
  item = storage.dtype.itemsize
  return np.lib.stride_tricks.as_strided(storage[offset:], shape=tuple(size),
                                         strides=tuple(s * item for s in stride)).copy()


class _TorchUnpickler(pickle.Unpickler):
  """Rebuilds only tensors, parameters and dicts; any other global is refused."""

  def __init__(self, file, load_storage):
    super().__init__(file)
    self._load_storage, self._storages = load_storage, {}

  def find_class(self, module, name):
    if module == 'torch._utils' and name == '_rebuild_tensor_v2':
      return _rebuild_tensor
    if module == 'torch._utils' and name == '_rebuild_parameter':
      return lambda data, *unused: data
    if module == 'torch' and name in _STORAGE_DTYPES:
      return _StorageType(name)
    if module == 'collections' and name == 'OrderedDict':
      return collections.OrderedDict
    raise pickle.UnpicklingError(f'{module}.{name} is not part of a tensor state dict')

  def persistent_load(self, pid):
    # ('storage', storage type, key, location, numel[, view metadata (legacy)])
    if pid[0] != 'storage' or str(pid[1]) not in _STORAGE_DTYPES:
      raise pickle.UnpicklingError(f'unsupported persistent id {pid[:2]}')
    key = str(pid[2])
    if key not in self._storages:
      self._storages[key] = self._load_storage(key, np.dtype(_STORAGE_DTYPES[str(pid[1])]),
                                               int(pid[4]))
    return self._storages[key]


def read_torch_state_dict(path: str) -> dict[str, np.ndarray]:
  """A state dict written by torch.save, as name -> numpy array, without torch.

  Raises:
    ValueError: not a torch.save file of tensors.
  """
  if zipfile.is_zipfile(path):
    with zipfile.ZipFile(path) as z:
      pkl = [n for n in z.namelist() if n.endswith('/data.pkl') or n == 'data.pkl']
      if not pkl:
        raise ValueError(f'{path} is a zip file without data.pkl: not written by torch.save')
      prefix = pkl[0][:-len('data.pkl')]

      def load(key, dtype, numel):
        return np.frombuffer(z.read(f'{prefix}data/{key}'), dtype, numel)

      with z.open(pkl[0]) as f:
        state = _TorchUnpickler(f, load).load()
  else:
    # Legacy: pickles of magic, protocol, sys info, the object, the storage keys; then
    # each storage as an int64 element count followed by its raw bytes.
    with open(path, 'rb') as f:
      if pickle.load(f) != _LEGACY_MAGIC:
        raise ValueError(f'{path} is neither a torch.save file nor an .npz')
      pickle.load(f), pickle.load(f)
      pending = {}
      unpickler = _TorchUnpickler(f, lambda key, dtype, numel: pending.setdefault(
          key, np.empty(numel, dtype)))
      state = unpickler.load()
      for key in pickle.load(f):
        count = int(np.frombuffer(f.read(8), '<i8')[0])
        dtype = pending[key].dtype
        pending[key][:] = np.frombuffer(f.read(count * dtype.itemsize), dtype, count)
  if not isinstance(state, dict):
    raise ValueError(f'{path} holds a {type(state).__name__}, not a state dict')
  return {k: np.asarray(v) for k, v in state.items()}


def _read_state_dict(path: str) -> dict[str, np.ndarray]:
  if path.endswith('.npz'):
    with np.load(path) as f:
      return {k: f[k] for k in f.files}
  return read_torch_state_dict(path)


def to_state_dict(flat: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
  """The inverse of `convert_state_dict`: flattened Flax variables -> torchvision names."""
  names = {'kernel': 'weight', 'scale': 'weight', 'bias': 'bias', 'mean': 'running_mean',
           'var': 'running_var'}
  state = {}
  for key, value in flat.items():
    _, *path, leaf = key.split('/')
    if leaf == 'kernel':   # torch: conv [O, I, kh, kw], linear [out, in]
      value = value.transpose(3, 2, 0, 1) if value.ndim == 4 else value.T
    state['.'.join(path + [names[leaf]])] = np.ascontiguousarray(value)
  return state


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--src', required=True,
                      help='pt_inception-2015-12-05-*.pth, or its state dict as .npz')
  parser.add_argument('--out', required=True, help='the .npz to write')
  args = parser.parse_args(argv)
  from models import inception  # pylint: disable=g-import-not-at-top
  flat = convert_state_dict(_read_state_dict(args.src))
  with open(args.out, 'wb') as f:
    np.savez(f, **flat)
  variables = inception.load_variables(args.out)   # checks every name and shape
  print(f'wrote {args.out}: {inception.count_params(variables):,} parameters '
        f'(want {inception.NUM_PARAMS:,})')


if __name__ == '__main__':
  main()
