"""Parameter mapping from the reference layouts to this project's Flax trees.

- score_sde_pytorch: a state dict is flat, in module registration order, which
  in the reference networks is the order `forward` uses them. Flax creates
  parameters in call order. So the i-th torch parameter is the i-th parameter
  this project creates; each pair is checked by shape after the layout change
  (conv [out, in, kh, kw] -> [kh, kw, in, out], Linear [out, in] -> [in, out];
  NIN `W` and every vector keep theirs). `ema.shadow_params` is the same list
  restricted to trainable parameters: NCSN++'s Gaussian Fourier `W` is not one.
- score_sde (JAX): the trees have the same nesting and flax auto-names
  (`Type_k`, numbered per module type in call order) as this project's. A few
  module types are named differently here (`AttnBlockpp` is `AttnBlock`, the FIR
  `Conv2d` is `Conv2dResample`, ...); within a type the index k is kept, since
  both count calls in the same order. Leaf names that differ (the FIR conv's
  `weight` is `kernel` here) are paired in creation order.
"""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from errors import CheckpointError

Path = tuple[str, ...]

# score_sde module type -> this project's, where they differ.
JAX_TYPE_RENAMES = {'AttnBlockpp': 'AttnBlock', 'ResnetBlockBigGANpp': 'ResnetBlockBigGAN',
                    'ResnetBlockDDPMpp': 'ResnetBlockDDPM', 'Conv2d': 'Conv2dResample'}
# State-dict entries that are buffers (not parameters) in the reference networks.
TORCH_BUFFERS = ('sigmas', 'running_mean', 'running_var', 'num_batches_tracked')
# Parameters that score_sde_pytorch creates with requires_grad=False (absent from the EMA).
FROZEN_MODULE_TYPES = ('GaussianFourierProjection',)


def creation_order(model, data_shape: tuple[int, ...]) -> tuple[list[tuple[Path, tuple]], Any]:
  """This project's parameters in creation (call) order, without computing any.

  Returns:
    [(path, shape)] in creation order, and the abstract param tree.
  """
  order = []

  def init():
    params = model.init(jax.random.PRNGKey(0), jnp.zeros((1,) + tuple(data_shape)),
                        jnp.zeros((1,)), train=False)['params']
    # Inside the trace the dict still has flax's insertion (creation) order; jax's
    # own tree functions would sort it.
    order.extend(_walk(params))
    return params

  abstract = jax.eval_shape(init)
  return [(path, tuple(leaf.shape)) for path, leaf in order], abstract


def _walk(tree, prefix: Path = ()):
  for key, value in tree.items():
    if isinstance(value, dict) or hasattr(value, 'items'):
      yield from _walk(value, prefix + (key,))
    else:
      yield prefix + (key,), value


def _set(tree: dict, path: Path, value) -> None:
  for key in path[:-1]:
    tree = tree.setdefault(key, {})
  tree[path[-1]] = value


def _to_project_layout(array: np.ndarray, leaf_name: str) -> np.ndarray:
  """torch layout -> Flax layout for one tensor (see the module docstring)."""
  if array.ndim == 4:
    return array.transpose(2, 3, 1, 0)
  if array.ndim == 2 and leaf_name == 'kernel':
    return array.T
  return array


def _torch_frozen(name: str) -> bool:
  """NCSN++'s Gaussian Fourier features: `all_modules.0.W` (requires_grad=False)."""
  return name.endswith('all_modules.0.W')


def _is_frozen(path: Path) -> bool:
  return any(p.rsplit('_', 1)[0] in FROZEN_MODULE_TYPES for p in path)


# score_sde_pytorch's RefineNets (ncsnv2.py) register modules in another order than
# `forward` calls them: begin_conv, normalizer, end_conv, res*, refine* at the top;
# conv1, normalize2, conv2, shortcut, normalize1 in a ResidualBlock; adapt_convs,
# output_convs, msf, crp in a RefineBlock. Ranks of each name in call order:
_REFINENET_RANKS = {
    'begin_conv': (0, 0), 'normalizer': (3, 0), 'end_conv': (4, 0),
    'normalize1': (0, 0), 'conv1': (1, 0), 'normalize2': (2, 0), 'conv2': (3, 0),
    'shortcut': (4, 0),
    'adapt_convs': (0, 0), 'msf': (1, 0), 'crp': (2, 0), 'output_convs': (3, 0),
}
# NCSN v1's conditional blocks norm before each conv, but CondCRPBlock / CondMSFBlock
# register the list `convs` before `norms`, and CondRCUBlock's `i_j_norm` holds one more
# name part (`embed.weight`) than `i_j_conv.weight`: stage k's norm, then its conv.
_NORM_CONV = {'norms': 0, 'norm': 0, 'convs': 1, 'conv': 1}


def _refinenet_key(name: str) -> tuple:
  """Sort key of a score_sde_pytorch RefineNet parameter name: its place in call order."""
  parts, key, i = name.split('.'), [], 0
  while i < len(parts):
    part = parts[i]
    rcu = part.split('_')   # an RCU stage: '<block>_<stage>_<norm|conv>'
    if part in _REFINENET_RANKS:
      key.append(_REFINENET_RANKS[part])
    elif part.startswith(('res', 'refine')) and part.lstrip('refins').isdigit():
      key.append((1 if part.startswith('res') else 2, int(part.lstrip('refins'))))
    elif part in ('norms', 'convs') and i + 1 < len(parts) and parts[i + 1].isdigit():
      key.append((int(parts[i + 1]), _NORM_CONV[part]))   # stage first, then norm < conv
      i += 1
    elif len(rcu) == 3 and rcu[0].isdigit() and rcu[1].isdigit() and rcu[2] in _NORM_CONV:
      key.append((int(rcu[0]), int(rcu[1]), _NORM_CONV[rcu[2]]))
    elif part.isdigit():
      key.append((0, int(part)))
    else:   # weight/bias, alpha/gamma/beta, embed: registration order is call order
      key.append((0, 0))
    i += 1
  return tuple(key)


# model.name -> sort key putting torch names in call order (default: registration order).
TORCH_CALL_ORDER = {name: _refinenet_key for name in
                    ('ncsn', 'ncsnv2_64', 'ncsnv2_128', 'ncsnv2_256')}


def _strip(key: str) -> str:
  """Drops DataParallel's `module.` prefix."""
  return key[len('module.'):] if key.startswith('module.') else key


def torch_parameters(state_dict: dict, model_name: str = '') -> list[tuple[str, np.ndarray]]:
  """The parameters of a (DataParallel) state dict in call order, `module.` stripped,
  buffers dropped."""
  out = []
  for key, value in state_dict.items():
    name = _strip(key)
    if name.rsplit('.', 1)[-1] in TORCH_BUFFERS:
      continue
    out.append((name, np.asarray(value)))
  if model_name in TORCH_CALL_ORDER:   # sorted() is stable: ties keep registration order
    out = sorted(out, key=lambda item: TORCH_CALL_ORDER[model_name](item[0]))
  return out


def map_torch(tensors: list[tuple[str, np.ndarray]], order: list[tuple[Path, tuple]],
              source: str, what: str) -> dict:
  """Pairs torch tensors (in order) with this project's parameters (in order).

  Args:
    tensors: [(torch name, array)] in the reference's parameter order.
    order: this project's [(path, shape)] in creation order, already restricted
      like `tensors` (e.g. to trainable ones for the EMA).
    source: the file, for messages.
    what: 'model' or 'ema.shadow_params', for messages.

  Returns:
    A nested dict of float32 numpy arrays, keyed like the project's tree.

  Raises:
    CheckpointError naming the first parameter that has no partner or whose
    shape differs: the config (or architecture) is not the checkpoint's.
  """
  params = {}
  for i, (path, shape) in enumerate(order):
    if i >= len(tensors):
      raise CheckpointError(
          f'{source}: {what} has {len(tensors)} parameters but the config\'s network has '
          f'{len(order)}; the first missing one is {"/".join(path)} {shape}; use the config '
          'the checkpoint was trained with (--config.model.* overrides)')
    name, array = tensors[i]
    value = _to_project_layout(array, path[-1])
    if tuple(value.shape) != shape:
      raise CheckpointError(
          f'{source}: {what} parameter {i} {name!r} has shape {tuple(array.shape)} (torch '
          f'layout) but the config\'s {"/".join(path)} needs {shape}; use the config the '
          'checkpoint was trained with (--config.model.* overrides)')
    _set(params, path, np.asarray(value, np.float32))
  if len(tensors) > len(order):
    name, array = tensors[len(order)]
    raise CheckpointError(
        f'{source}: {what} has {len(tensors)} parameters but the config\'s network has '
        f'{len(order)}; the first extra one is {name!r} {tuple(array.shape)}; use the config '
        'the checkpoint was trained with (--config.model.* overrides)')
  return params


def torch_to_project(state_dict: dict, shadow: list, order: list[tuple[Path, tuple]],
                     source: str, model_name: str = '') -> tuple[dict, dict]:
  """score_sde_pytorch `model` and `ema.shadow_params` -> (params, ema_params).

  `shadow` is in registration order (model.parameters()); it is reordered like
  the state dict, whose trainable entries it pairs with one to one.
  """
  tensors = torch_parameters(state_dict, model_name)
  params = map_torch(tensors, order, source, 'model')
  trainable = [(p, s) for p, s in order if not _is_frozen(p)]
  names = [_strip(k) for k in state_dict
           if k.rsplit('.', 1)[-1] not in TORCH_BUFFERS and not _torch_frozen(k)]
  if len(names) == len(shadow):   # name each shadow entry after its parameter
    entries = [(i, n, np.asarray(a)) for i, (n, a) in enumerate(zip(names, shadow))]
    if model_name in TORCH_CALL_ORDER:
      entries = sorted(entries, key=lambda e: TORCH_CALL_ORDER[model_name](e[1]))
    shadow_named = [(f'ema.shadow_params[{i}] ({n})', a) for i, n, a in entries]
  else:   # the length check in map_torch reports it
    shadow_named = [(f'ema.shadow_params[{i}]', np.asarray(a)) for i, a in enumerate(shadow)]
  ema = map_torch(shadow_named, trainable, source, 'ema.shadow_params')
  for path, _ in order:
    if _is_frozen(path):   # not trained: the EMA's value is the model's
      value = params
      for key in path:
        value = value[key]
      _set(ema, path, value)
  return params, ema


def _split_type(name: str) -> tuple[str, str]:
  kind, _, index = name.rpartition('_')
  return (kind, index) if index.isdigit() and kind else (name, '')


def flax_to_project(ref: dict, abstract: dict, source: str, what: str,
                    prefix: Path = ()) -> dict:
  """A score_sde param tree -> this project's, checked against `abstract` (see docstring).

  Raises:
    CheckpointError naming the first parameter or module with no partner, or
    whose shape differs.
  """
  where = lambda path: '/'.join(path) or '<root>'   # noqa: E731
  ref_modules = {k: v for k, v in ref.items() if isinstance(v, dict)}
  ref_leaves = [k for k, v in ref.items() if not isinstance(v, dict)]
  own_types = {_split_type(k)[0] for k, v in abstract.items() if isinstance(v, dict)}
  out, used = {}, set()
  for key, sub in ref_modules.items():
    kind, index = _split_type(key)
    if kind not in own_types:
      kind = JAX_TYPE_RENAMES.get(kind, kind)
    target = f'{kind}_{index}' if index else kind
    if not isinstance(abstract.get(target), dict):
      raise CheckpointError(
          f'{source}: {what} module {where(prefix + (key,))} has no counterpart in the '
          f'config\'s network; use the config the checkpoint was trained with')
    out[target] = flax_to_project(sub, abstract[target], source, what, prefix + (key,))
    used.add(target)
  missing = sorted(k for k, v in abstract.items() if isinstance(v, dict) and k not in used)
  if missing:
    raise CheckpointError(f'{source}: {what} has no {where(prefix + (missing[0],))}, which the '
                          'config\'s network needs; use the config the checkpoint was trained '
                          'with')
  own_leaves = [k for k, v in abstract.items() if not isinstance(v, dict)]
  if set(ref_leaves) == set(own_leaves):
    pairs = [(k, k) for k in own_leaves]
  elif len(ref_leaves) == len(own_leaves):   # renamed leaves: kernel-like first, bias last
    rank = lambda k: (k in ('bias', 'b'), k)   # noqa: E731
    pairs = list(zip(sorted(ref_leaves, key=rank), sorted(own_leaves, key=rank)))
  else:
    raise CheckpointError(f'{source}: {what} module {where(prefix)} holds {sorted(ref_leaves)} '
                          f'but the config\'s network needs {sorted(own_leaves)}')
  for ref_key, own_key in pairs:
    value = np.asarray(ref[ref_key])
    shape = tuple(abstract[own_key].shape)
    if value.shape != shape:
      raise CheckpointError(
          f'{source}: {what} parameter {where(prefix + (ref_key,))} has shape {value.shape} '
          f'but the config\'s network needs {shape}; use the config the checkpoint was trained '
          'with (--config.model.* overrides)')
    out[own_key] = np.asarray(value, np.float32)
  return out

