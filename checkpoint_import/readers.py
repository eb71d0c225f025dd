"""Readers for the published score_sde checkpoint files, without torch or flax.optim.

- score_sde_pytorch: `checkpoint_<N>.pth`, a `torch.save` zip archive:
  `<root>/data.pkl` is a pickle whose tensors point, through `persistent_load`,
  at raw little-endian storages `<root>/data/<key>`. A restricted unpickler maps
  the few globals such a state dict needs to numpy and refuses every other one,
  so an untrusted file cannot run code.
- score_sde (JAX): `checkpoint_<N>`, the msgpack of the legacy
  `flax.training.checkpoints`; arrays are msgpack ExtType 1 =
  packb((shape, dtype name, C-order bytes)), which current
  `flax.serialization.msgpack_restore` still decodes.

Both return plain nested dicts / lists of numpy arrays and Python scalars.
"""
from __future__ import annotations

import collections
import io
import pickle
import zipfile
from typing import Any

import numpy as np

from errors import CheckpointError

# torch storage class name -> numpy dtype of its raw bytes.
_STORAGE_DTYPES = {
    'FloatStorage': np.float32, 'DoubleStorage': np.float64, 'HalfStorage': np.float16,
    'LongStorage': np.int64, 'IntStorage': np.int32, 'ShortStorage': np.int16,
    'CharStorage': np.int8, 'ByteStorage': np.uint8, 'BoolStorage': np.bool_,
}


class _Storage:
  """A torch storage's flat contents, a 1-D numpy array."""

  def __init__(self, array: np.ndarray):
    self.array = array


class _StorageType:
  def __init__(self, name: str):
    self.name = name


def _rebuild_tensor(storage: _Storage, offset: int, size, stride, *unused) -> np.ndarray:
  """torch._utils._rebuild_tensor_v2: a strided view of the storage, copied C-contiguous."""
  del unused   # requires_grad, backward hooks, metadata: meaningless for numpy
  flat = storage.array
  itemsize = flat.dtype.itemsize
  if len(size) and (offset + sum((n - 1) * s for n, s in zip(size, stride)) >= flat.size
                    and 0 not in size):
    raise CheckpointError('tensor extends past its storage')
  view = np.lib.stride_tricks.as_strided(flat[offset:], shape=tuple(size),
                                         strides=tuple(s * itemsize for s in stride))
  return np.array(view)


def _rebuild_parameter(data, requires_grad, backward_hooks, *unused):
  del requires_grad, backward_hooks, unused
  return data


def _numpy_scalar(dtype, data=None):
  """numpy's `multiarray.scalar` reconstructor (a numpy.float64 lr, say)."""
  return np.frombuffer(data, dtype=dtype, count=1)[0] if data is not None else dtype.type()


def _codecs_encode(text, encoding='utf-8'):
  # Protocol-2 pickles store bytes as _codecs.encode(latin1 text, 'latin1').
  return text.encode(encoding)


_SAFE_GLOBALS = {
    ('torch._utils', '_rebuild_tensor_v2'): _rebuild_tensor,
    ('torch._utils', '_rebuild_tensor'): _rebuild_tensor,
    ('torch._utils', '_rebuild_parameter'): _rebuild_parameter,
    ('collections', 'OrderedDict'): collections.OrderedDict,  # takes _metadata
    ('numpy._core.multiarray', 'scalar'): _numpy_scalar,
    ('numpy.core.multiarray', 'scalar'): _numpy_scalar,
    ('numpy', 'dtype'): np.dtype,
    ('_codecs', 'encode'): _codecs_encode,
}


class _TorchUnpickler(pickle.Unpickler):
  """Unpickles a torch state-dict pickle into numpy; refuses any other global."""

  def __init__(self, data: bytes, archive: zipfile.ZipFile, root: str, path: str):
    super().__init__(io.BytesIO(data))
    self.archive, self.root, self.path = archive, root, path
    self.storages: dict[str, _Storage] = {}

  def find_class(self, module, name):
    if (module, name) in _SAFE_GLOBALS:
      return _SAFE_GLOBALS[(module, name)]
    if module == 'torch' and name in _STORAGE_DTYPES:
      return _StorageType(name)
    if module == 'numpy.dtypes' and name.endswith('DType'):
      return np.dtype   # only ever used as the class of a dtype already built by np.dtype
    raise CheckpointError(f'{self.path} needs the pickle global {module}.{name}, which a '
                          'score_sde_pytorch checkpoint never contains; refusing to load it '
                          '(it could run code)')

  def persistent_load(self, pid):
    if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == 'storage'
            and isinstance(pid[1], _StorageType)):
      raise CheckpointError(f'{self.path}: unknown persistent id {str(pid)[:60]}')
    _, storage_type, key, _, numel = pid[:5]
    if key not in self.storages:
      dtype = np.dtype(_STORAGE_DTYPES[storage_type.name]).newbyteorder('<')
      try:
        raw = self.archive.read(f'{self.root}/data/{key}')
      except (KeyError, zipfile.BadZipFile, EOFError, OSError) as e:
        raise CheckpointError(f'{self.path}: storage data/{key} is missing or unreadable '
                              f'({e}); the file is truncated or corrupt') from None
      if len(raw) < numel * dtype.itemsize:
        raise CheckpointError(f'{self.path}: storage data/{key} holds {len(raw)} bytes, '
                              f'fewer than its {numel} elements need; the file is truncated')
      self.storages[key] = _Storage(np.frombuffer(raw, dtype=dtype, count=numel))
    return self.storages[key]


def read_pth(path: str) -> Any:
  """Loads a `torch.save` zip file (e.g. score_sde_pytorch's checkpoint_<N>.pth).

  Returns:
    The saved object with tensors as numpy arrays (their torch dtype; C-order,
    the torch layout, e.g. conv weights [out, in, kh, kw]).

  Raises:
    CheckpointError: not a zip archive (truncated, or torch's legacy non-zip
      format), a missing storage, or a pickle global outside a state dict's.
  """
  try:
    archive = zipfile.ZipFile(path)
    names = archive.namelist()
  except (zipfile.BadZipFile, OSError, EOFError) as e:
    raise CheckpointError(f'{path} is not a readable torch.save zip archive ({e}); the file is '
                          'truncated or corrupt (re-download it), or was written by torch < 1.6 '
                          '(re-save it with a current torch)') from None
  pickles = [n for n in names if n.endswith('/data.pkl') and n.count('/') == 1]
  if not pickles:
    raise CheckpointError(f'{path} has no <root>/data.pkl; it is not a torch.save file')
  root = pickles[0].split('/')[0]
  byteorder = f'{root}/byteorder'
  if byteorder in names and archive.read(byteorder).strip() != b'little':
    raise CheckpointError(f'{path} was written on a big-endian machine; re-save it on a '
                          'little-endian one')
  try:
    data = archive.read(pickles[0])
    return _TorchUnpickler(data, archive, root, path).load()
  except CheckpointError:
    raise
  except (pickle.UnpicklingError, zipfile.BadZipFile, EOFError, ValueError, TypeError,
          KeyError, IndexError, AttributeError, OSError) as e:
    raise CheckpointError(f'{path}: cannot unpickle {pickles[0]} ({type(e).__name__}: '
                          f'{str(e)[:80]}); the file is truncated or corrupt') from None


def read_flax_msgpack(path: str) -> dict:
  """Loads a legacy `flax.training.checkpoints` file (score_sde's checkpoint_<N>).

  Returns:
    The State's state dict: {'step', 'optimizer': {'target', 'state'},
    'params_ema', 'model_state', 'lr', 'ema_rate', 'rng'}, arrays as numpy.

  Raises:
    CheckpointError: unreadable, truncated or not a msgpack map.
  """
  from flax import serialization   # lazy: only this reader needs it
  try:
    with open(path, 'rb') as f:
      raw = f.read()
    state = serialization.msgpack_restore(raw)
  except OSError as e:
    raise CheckpointError(f'cannot read {path}: {e.strerror}') from None
  except Exception as e:  # pylint: disable=broad-except  (msgpack raises many types)
    raise CheckpointError(f'{path} is not a readable flax msgpack checkpoint '
                          f'({type(e).__name__}: {str(e)[:80]}); the file is truncated or '
                          'corrupt') from None
  if not isinstance(state, dict):
    raise CheckpointError(f'{path} holds a {type(state).__name__}, not a flax State map')
  return state
