"""Readers for the published checkpoint files, without torch or flax.optim.

- `torch.save` files (score_sde_pytorch's `checkpoint_<N>.pth`, pytorch-fid's
  FID Inception weights), in both of torch's formats:
  - zip (torch >= 1.6): `<root>/data.pkl` is a pickle whose tensors point,
    through `persistent_load`, at raw little-endian storages `<root>/data/<key>`;
  - legacy (earlier torch): five pickles back to back (magic number, protocol,
    sys info, the object, its storage keys), then each storage as an int64
    element count and its raw little-endian bytes.
  A restricted unpickler maps the few globals such a state dict needs to numpy
  and refuses every other one, so an untrusted file cannot run code.
- score_sde (JAX): `checkpoint_<N>`, the msgpack of the legacy
  `flax.training.checkpoints`; arrays are msgpack ExtType 1 =
  packb((shape, dtype name, C-order bytes)), which current
  `flax.serialization.msgpack_restore` still decodes.

Both return plain nested dicts / lists of numpy arrays and Python scalars.
"""
from __future__ import annotations

import collections
import io
import os
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
  """A torch storage's flat contents, a 1-D numpy array.

  `pending`: the bytes are not read yet (legacy files store them after the
  pickle), so tensors are rebuilt as views and copied once they are filled.
  """

  def __init__(self, array: np.ndarray, pending: bool = False):
    self.array, self.pending = array, pending


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
  return view if storage.pending else np.array(view)


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

# torch.save's legacy format: the first pickle holds this number, the second this protocol.
LEGACY_MAGIC = 0x1950a86a20f9469cfc6c
_LEGACY_PROTOCOL = 1001

# What a damaged file makes pickle / zipfile / the rebuilders raise.
_CORRUPT = (pickle.UnpicklingError, zipfile.BadZipFile, EOFError, ValueError, TypeError,
            KeyError, IndexError, AttributeError, OSError)


class _TorchUnpickler(pickle.Unpickler):
  """Unpickles a torch state-dict pickle into numpy; refuses any other global.

  `load_storage(key, dtype, numel)` returns the storage `key`'s _Storage; it is
  called once per key. Without it (legacy headers) a persistent id is refused.
  """

  def __init__(self, file, path: str, load_storage=None):
    super().__init__(file)
    self.path, self.load_storage = path, load_storage
    self.storages: dict[str, _Storage] = {}

  def find_class(self, module, name):
    if (module, name) in _SAFE_GLOBALS:
      return _SAFE_GLOBALS[(module, name)]
    if module == 'torch' and name in _STORAGE_DTYPES:
      return _StorageType(name)
    if module == 'numpy.dtypes' and name.endswith('DType'):
      return np.dtype   # only ever used as the class of a dtype already built by np.dtype
    raise CheckpointError(f'{self.path} needs the pickle global {module}.{name}, which a '
                          'torch.save file of tensors never contains; refusing to load it '
                          '(it could run code)')

  def persistent_load(self, pid):
    # ('storage', storage type, key, location, numel[, legacy view metadata])
    if not (self.load_storage and isinstance(pid, tuple) and len(pid) >= 5
            and pid[0] == 'storage' and isinstance(pid[1], _StorageType)):
      raise CheckpointError(f'{self.path}: unknown persistent id {str(pid)[:60]}')
    _, storage_type, key, _, numel = pid[:5]
    if key not in self.storages:
      dtype = np.dtype(_STORAGE_DTYPES[storage_type.name]).newbyteorder('<')
      self.storages[key] = self.load_storage(key, dtype, int(numel))
    view = pid[5] if len(pid) > 5 else None
    if view is None:
      return self.storages[key]
    # Old torch (legacy format) pickled a view of a storage as (view key, element offset,
    # element count); the view is its own storage, cached by its key.
    view_key, offset, count = view
    if view_key not in self.storages:
      root = self.storages[key]
      self.storages[view_key] = _Storage(root.array[offset:offset + count], root.pending)
    return self.storages[view_key]


def _read_zip(path: str) -> Any:
  """torch.save's zip format (torch >= 1.6)."""
  try:
    archive = zipfile.ZipFile(path)
    names = archive.namelist()
  except (zipfile.BadZipFile, OSError, EOFError) as e:
    raise CheckpointError(f'{path} is not a readable torch.save zip archive ({e}); the file is '
                          'truncated or corrupt (re-download it)') from None
  pickles = [n for n in names if n.endswith('/data.pkl') and n.count('/') == 1]
  if not pickles:
    raise CheckpointError(f'{path} has no <root>/data.pkl; it is not a torch.save file')
  root = pickles[0].split('/')[0]
  byteorder = f'{root}/byteorder'
  if byteorder in names and archive.read(byteorder).strip() != b'little':
    raise CheckpointError(f'{path} was written on a big-endian machine; re-save it on a '
                          'little-endian one')

  def load_storage(key, dtype, numel):
    try:
      raw = archive.read(f'{root}/data/{key}')
    except (KeyError, zipfile.BadZipFile, EOFError, OSError) as e:
      raise CheckpointError(f'{path}: storage data/{key} is missing or unreadable '
                            f'({e}); the file is truncated or corrupt') from None
    if len(raw) < numel * dtype.itemsize:
      raise CheckpointError(f'{path}: storage data/{key} holds {len(raw)} bytes, '
                            f'fewer than its {numel} elements need; the file is truncated')
    return _Storage(np.frombuffer(raw, dtype=dtype, count=numel))

  try:
    data = archive.read(pickles[0])
    return _TorchUnpickler(io.BytesIO(data), path, load_storage).load()
  except CheckpointError:
    raise
  except _CORRUPT as e:
    raise CheckpointError(f'{path}: cannot unpickle {pickles[0]} ({type(e).__name__}: '
                          f'{str(e)[:80]}); the file is truncated or corrupt') from None


def _copy_arrays(obj, memo: dict):
  """Replaces every array in a legacy file's containers by a copy (dicts, lists in place).

  The legacy rebuild returns views into storages filled after the pickle; the
  copies make each tensor independent, as the zip reader's are.
  """
  if isinstance(obj, np.ndarray):
    return np.array(obj)
  if id(obj) in memo:       # a pickle may reference one container twice, or itself
    return memo[id(obj)]
  memo[id(obj)] = obj
  if isinstance(obj, dict):
    for k in obj:
      obj[k] = _copy_arrays(obj[k], memo)
  elif isinstance(obj, list):
    obj[:] = [_copy_arrays(v, memo) for v in obj]
  elif isinstance(obj, tuple):
    memo[id(obj)] = tuple(_copy_arrays(v, memo) for v in obj)
  return memo[id(obj)]


def _read_legacy(path: str, f) -> Any:
  """torch.save's legacy format (torch < 1.6), from the open file `f`."""
  header = _TorchUnpickler(f, path)   # no persistent ids, no tensors in the headers
  if header.load() != LEGACY_MAGIC:
    raise CheckpointError(f'{path} is neither a torch.save zip archive nor a legacy torch.save '
                          'file; the file is truncated or corrupt (re-download it), or not a '
                          'torch checkpoint')
  protocol = _TorchUnpickler(f, path).load()
  if protocol != _LEGACY_PROTOCOL:
    raise CheckpointError(f'{path} is a legacy torch.save file of protocol {protocol}, not '
                          f'{_LEGACY_PROTOCOL}; re-save it with a current torch')
  sys_info = _TorchUnpickler(f, path).load()
  if isinstance(sys_info, dict) and not sys_info.get('little_endian', True):
    raise CheckpointError(f'{path} was written on a big-endian machine; re-save it on a '
                          'little-endian one')

  roots: dict[str, _Storage] = {}   # storage key -> its buffer, filled after the pickle
  size = os.fstat(f.fileno()).st_size

  def load_storage(key, dtype, numel):
    if numel * dtype.itemsize > size:   # before allocating what a corrupt count asks for
      raise CheckpointError(f'{path}: storage {key} needs {numel} elements, more than the '
                            f'file\'s {size} bytes hold; the file is truncated or corrupt')
    roots[key] = _Storage(np.empty(numel, dtype), pending=True)
    return roots[key]

  obj = _TorchUnpickler(f, path, load_storage).load()
  keys = _TorchUnpickler(f, path).load()
  if not isinstance(keys, list):
    raise CheckpointError(f'{path}: the storage key list is a {type(keys).__name__}; the file '
                          'is corrupt')
  for key in keys:
    storage = roots.get(key)
    if storage is None or not storage.pending:
      raise CheckpointError(f'{path}: storage {str(key)[:30]} is not used by the pickle or '
                            'listed twice; the file is corrupt')
    count = np.frombuffer(f.read(8), '<i8')
    if count.size != 1 or int(count[0]) != storage.array.size:
      raise CheckpointError(f'{path}: storage {key} should hold {storage.array.size} elements, '
                            f'the file says {count[:1].tolist()}; the file is truncated or '
                            'corrupt')
    if f.readinto(storage.array.view(np.uint8)) != storage.array.nbytes:
      raise CheckpointError(f'{path}: storage {key} is cut short; the file is truncated')
    storage.pending = False
  unread = [k for k, s in roots.items() if s.pending]
  if unread:
    raise CheckpointError(f'{path}: storage {unread[0]} has no data after the pickle; the '
                          'file is truncated or corrupt')
  return _copy_arrays(obj, {})


def read_pth(path: str) -> Any:
  """Loads a `torch.save` file, zip or legacy format (a checkpoint_<N>.pth, say).

  Returns:
    The saved object with tensors as numpy arrays (their torch dtype; C-order,
    the torch layout, e.g. conv weights [out, in, kh, kw]).

  Raises:
    CheckpointError: unreadable, truncated or not a torch.save file, a missing
      storage, or a pickle global outside a state dict's.
  """
  try:
    with open(path, 'rb') as f:
      if f.read(2) != b'PK':   # not a zip's local-header / end-of-archive signature
        f.seek(0)
        try:
          return _read_legacy(path, f)
        except CheckpointError:
          raise
        except _CORRUPT as e:
          raise CheckpointError(f'{path} is not a readable torch.save file ({type(e).__name__}: '
                                f'{str(e)[:80]}); the file is truncated or corrupt '
                                '(re-download it)') from None
  except OSError as e:
    raise CheckpointError(f'cannot read {path}: {e.strerror}') from None
  return _read_zip(path)


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
