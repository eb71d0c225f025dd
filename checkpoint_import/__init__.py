"""Import the published score_sde / score_sde_pytorch checkpoints as ordinary runs.

`import_checkpoint(config, src, workdir)` reads either format, maps it onto the
config's network (checkpoint_import.layouts), checks every parameter, and only
then writes a TrainState to workdir/checkpoints/<step> through checkpointing.py,
so every mode (sample, likelihood, eval, inpaint, colorize, DMCMC) restores it
as it restores a run trained here.

- score_sde_pytorch `.pth`: `model` -> params, `ema.shadow_params` -> EMA params,
  `step`; a VE network's `sigmas` buffer is checked against the config's SDE.
- score_sde `checkpoint_<N>` (msgpack): `optimizer.target` -> params,
  `params_ema` -> EMA params, `step`.

The optimizer state is not carried over (Adam's moments are laid out per
framework): the written checkpoint has a fresh optax state, so training resumed
from it restarts Adam's moment estimates.
"""
from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
import tempfile
import zipfile
from typing import Any

import numpy as np

import sde_lib
from checkpoint_import import layouts, readers
from errors import CheckpointError

TORCH_MODEL_OVERRIDES = {   # score_sde_pytorch's RefineNet choices (see models/ncsn.py)
    'ncsn': {'instance_norm_unbiased': True, 'refine_align_corners': True},
    **{name: {'instance_norm_unbiased': True, 'refine_align_corners': True}
       for name in ('ncsnv2_64', 'ncsnv2_128', 'ncsnv2_256')},
}


# torch.save's legacy format: pickle protocol 2, then the long readers.LEGACY_MAGIC.
_LEGACY_PTH_HEAD = pickle.dumps(readers.LEGACY_MAGIC, protocol=2)[:-1]   # without STOP


def source_format(path: str) -> str:
  """'pth' (torch.save, zip or legacy) or 'msgpack' (flax), by content; CheckpointError if not."""
  if not os.path.isfile(path):
    raise CheckpointError(f'--src={path}: no such file')
  if zipfile.is_zipfile(path):
    return 'pth'
  with open(path, 'rb') as f:
    head = f.read(len(_LEGACY_PTH_HEAD))
  # A legacy (pre-1.6) torch.save opens with the pickled magic number, whose first byte
  # (pickle's PROTO, 0x80) is also a msgpack fixmap's: test for the whole magic first.
  if head == _LEGACY_PTH_HEAD:
    return 'pth'
  if head[:1] and 0x80 <= head[0] <= 0x8f or head[:1] in (b'\xde', b'\xdf'):   # msgpack map
    return 'msgpack'
  raise CheckpointError(f'--src={path} is neither a torch.save file (.pth) nor a flax msgpack '
                        'checkpoint (or it is truncated); pass score_sde_pytorch\'s '
                        'checkpoint_<N>.pth or score_sde\'s checkpoint_<N>')


def config_overrides(config, fmt: str) -> dict:
  """model.* fields an import from `fmt` needs: {field: value} (empty for most)."""
  return dict(TORCH_MODEL_OVERRIDES.get(config.model.name, {})) if fmt == 'pth' else {}


def _check_sigmas(config, state_dict: dict, src: str) -> None:
  """A VE network's float64 `sigmas` buffer (sigma_max first) must be the config's ladder."""
  sigmas = state_dict.get('module.sigmas', state_dict.get('sigmas'))
  if sigmas is None or config.training.sde.lower() != 'vesde':
    return
  m = config.model
  want = np.asarray(sde_lib.geometric_sigmas(m.sigma_max, m.sigma_min, m.num_scales))
  if sigmas.shape != want.shape or not np.allclose(sigmas, want, rtol=1e-5):
    got = (f'{len(sigmas)} levels {float(sigmas[0]):g} -> {float(sigmas[-1]):g}'
           if sigmas.size else 'empty')
    raise CheckpointError(
        f'{src}: model buffer sigmas has {got}, but the config has model.num_scales='
        f'{m.num_scales}, model.sigma_max={m.sigma_max:g}, model.sigma_min={m.sigma_min:g}; '
        'use the config the checkpoint was trained with')


def read_reference(config, src: str, model, data_shape) -> tuple[Any, Any, int]:
  """Reads `src` and maps it onto `model`: (params, ema_params, step), numpy trees.

  Raises:
    CheckpointError: unreadable or truncated file, missing params / EMA / step,
      or the first parameter whose name or shape differs from the config's network.
  """
  fmt = source_format(src)
  order, abstract = layouts.creation_order(model, data_shape)
  if fmt == 'pth':
    ckpt = readers.read_pth(src)
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get('model'), dict):
      raise CheckpointError(f'{src} has no \'model\' state dict; it is not a score_sde_pytorch '
                            'checkpoint (utils.save_checkpoint writes optimizer, model, ema, step)')
    ema = ckpt.get('ema')
    shadow = ema.get('shadow_params') if isinstance(ema, dict) else None
    if not shadow:
      raise CheckpointError(f'{src} has no EMA weights (ema.shadow_params); evaluation uses '
                            'them, so a checkpoint without them cannot be imported')
    _check_sigmas(config, ckpt['model'], src)
    params, ema_params = layouts.torch_to_project(ckpt['model'], list(shadow), order, src,
                                                  config.model.name)
  else:
    state = readers.read_flax_msgpack(src)
    target = (state.get('optimizer') or {}).get('target')
    if not isinstance(target, dict):
      raise CheckpointError(f'{src} has no optimizer.target (the training weights); it is not a '
                            'score_sde checkpoint')
    if not isinstance(state.get('params_ema'), dict):
      raise CheckpointError(f'{src} has no EMA weights (params_ema); evaluation uses them, so a '
                            'checkpoint without them cannot be imported')
    params = layouts.flax_to_project(target, abstract, src, 'optimizer.target')
    ema_params = layouts.flax_to_project(state['params_ema'], abstract, src, 'params_ema')
    ckpt = state
  if 'step' not in ckpt:
    raise CheckpointError(f'{src} has no step')
  return params, ema_params, int(np.asarray(ckpt['step']))


def _sha256(path: str) -> str:
  h = hashlib.sha256()
  with open(path, 'rb') as f:
    for block in iter(lambda: f.read(1 << 20), b''):
      h.update(block)
  return h.hexdigest()


def import_checkpoint(config, src: str, workdir: str) -> dict:
  """Writes `src` as workdir/checkpoints/<step>; nothing is written if anything fails.

  Args:
    config: the experiment config of the checkpoint's architecture. For a
      `.pth` RefineNet (ncsn, ncsnv2_*) the score_sde_pytorch model options are
      set on it (see `config_overrides`); every later mode needs them too.
    src: the score_sde_pytorch `.pth` or score_sde msgpack file.
    workdir: a run directory without checkpoints.

  Returns:
    {'step', 'checkpoint', 'format', 'required_overrides'}; the same record, with
    the source's path and sha256, goes to workdir/imported_checkpoint.json, and
    every mode restoring workdir refuses a config without `required_overrides`
    (checkpointing.check_import_record).
  """
  import jax   # lazy: the readers above need no jax
  import checkpointing
  import optim
  import parallel
  import restore
  import train_state
  from models import create_model

  final = checkpointing.checkpoint_dir(workdir)
  if os.path.isdir(final) and os.listdir(final):
    raise CheckpointError(f'{final} already holds checkpoints; import into a fresh --workdir')
  fmt = source_format(src)
  overrides = config_overrides(config, fmt)
  for field, value in overrides.items():
    config.model[field] = value
  model = create_model(config)
  data_shape = (config.data.image_size, config.data.image_size, config.data.num_channels)
  params, ema_params, step = read_reference(config, src, model, data_shape)

  # The TrainState restore.init_fn builds, without compiling the network's init: the
  # optimizer state is fresh (optax init of these params), the rng the one of config.seed.
  mesh = parallel.make_mesh()
  rep = parallel.replicated(mesh)
  put = lambda tree: jax.device_put(jax.tree.map(np.asarray, tree), rep)   # noqa: E731
  params, ema_params = put(params), put(ema_params)
  state = train_state.TrainState(
      step=jax.device_put(np.asarray(step, np.int32), rep), params=params,
      ema_params=ema_params, opt_state=put(optim.get_optimizer(config).init(params)),
      rng=put(restore.init_state_rng(config)))

  created = not os.path.exists(workdir)
  os.makedirs(os.path.abspath(workdir), exist_ok=True)
  staging = tempfile.mkdtemp(prefix='.import_', dir=os.path.abspath(workdir))
  try:   # written aside, then renamed: a failed write leaves no checkpoint behind
    ckpt = checkpointing.Checkpointer(staging, max_to_keep=1)
    ckpt.save(step, state, force=True)
    ckpt.close()
    if os.path.isdir(final):   # empty: os.replace needs it gone
      os.rmdir(final)
    os.replace(checkpointing.checkpoint_dir(staging), final)
  except BaseException:
    shutil.rmtree(staging, ignore_errors=True)
    if created:
      shutil.rmtree(workdir, ignore_errors=True)
    raise
  shutil.rmtree(staging, ignore_errors=True)
  # checkpointing.check_import_record holds every later mode of this workdir to these.
  record = {'step': step, 'checkpoint': os.path.join(final, str(step)), 'format': fmt,
            'required_overrides': {f'model.{k}': v for k, v in overrides.items()}}
  with open(os.path.join(workdir, checkpointing.IMPORT_RECORD), 'w') as f:
    json.dump({**record, 'source': os.path.abspath(src), 'sha256': _sha256(src),
               'config': config.get('name', '')}, f, indent=1)
  return record
