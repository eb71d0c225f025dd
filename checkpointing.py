"""Orbax checkpoints under `workdir/checkpoints`.

A checkpoint holds the whole TrainState: params, EMA params, optimizer state,
step and the base RNG key. The data position needs no separate entry: batch k
is a pure function of (seed, k) in `datasets.py`, so the step is the data state.
"""
from __future__ import annotations

import json
import os
from typing import Any

import jax
import orbax.checkpoint as ocp
from absl import logging

from errors import CheckpointError, ConfigError

# Written by checkpoint_import next to the checkpoints of an imported reference checkpoint.
IMPORT_RECORD = 'imported_checkpoint.json'


def checkpoint_dir(workdir: str) -> str:
  return os.path.join(os.path.abspath(workdir), 'checkpoints')


def check_import_record(config, workdir: str) -> None:
  """ConfigError if `workdir` holds an import whose required config values `config` lacks.

  An imported score_sde_pytorch NCSN / NCSNv2 only scores as its reference with the
  model options the import set (`required_overrides` in workdir/imported_checkpoint.json);
  the parameter shapes are the same either way, so without this check a mode run
  without them would restore the checkpoint and silently compute different scores.
  Every mode that restores a run calls this before it writes anything.

  Args:
    config: the mode's config.
    workdir: the run directory; one without the record (not imported) always passes.

  Raises:
    ConfigError: naming the first field whose config value differs from the record,
      with the flags that fix every differing field.
    CheckpointError: the record exists but is not readable JSON.
  """
  path = os.path.join(os.path.abspath(workdir), IMPORT_RECORD)
  if not os.path.isfile(path):
    return
  try:
    with open(path) as f:
      record = json.load(f)
  except (OSError, ValueError) as e:
    raise CheckpointError(f'{path} is unreadable ({e}); re-import the checkpoint into a fresh '
                          '--workdir') from None
  # 'overrides': the key of records written before it was named required_overrides.
  required = record.get('required_overrides', record.get('overrides')) or {}
  wrong = {}
  for key, want in sorted(required.items()):
    group, field = key.split('.', 1)
    have = config[group].get(field) if group in config else None
    if have != want:
      wrong[key] = (want, have)
  if wrong:
    key, (want, have) = next(iter(wrong.items()))
    fix = ' '.join(f'--config.{k}={v}' for k, (v, _) in wrong.items())
    raise ConfigError(f'{key}={have} but {path} records {key}={want} as required by the '
                      f'imported {record.get("format", "")} checkpoint (the parameters fit '
                      f'either way, the scores do not); run with {fix}')


class Checkpointer:
  """A thin wrapper over `ocp.CheckpointManager` that speaks our error types.

  Args:
    workdir: the run's directory; checkpoints go to workdir/checkpoints.
    max_to_keep: rolling (preemption) checkpoints kept.
    keep_period: steps that are multiples of this are kept for good.
    create: make the directory (False for read-only modes such as sampling).
  """

  def __init__(self, workdir: str, *, max_to_keep: int = 3, keep_period: int | None = None,
               create: bool = True):
    self.directory = checkpoint_dir(workdir)
    self.writable = create
    if not create and not os.path.isdir(self.directory):
      raise CheckpointError(f'no checkpoint in {self.directory}; train first with '
                            f'--mode train --workdir {workdir}')
    try:
      self.manager = ocp.CheckpointManager(
          self.directory,
          options=ocp.CheckpointManagerOptions(
              max_to_keep=max_to_keep, keep_period=keep_period, create=create,
              cleanup_tmp_directories=create),
          item_handlers=ocp.StandardCheckpointHandler())  # lets item_metadata read shapes
    except OSError as e:  # PermissionError, NotADirectoryError, read-only file system, ...
      raise CheckpointError(f'cannot write checkpoints to {self.directory}: {e.strerror}; '
                            'choose a writable --workdir') from None

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def all_steps(self) -> list[int]:
    return sorted(self.manager.all_steps())

  def save(self, step: int, state: Any, force: bool = False) -> None:
    self.manager.save(step, args=ocp.args.StandardSave(state), force=force)

  def wait(self) -> None:
    self.manager.wait_until_finished()

  def restore(self, abstract_state: Any, step: int | None = None) -> Any:
    """Restores `step` (default: the newest readable one) into `abstract_state`'s structure.

    An unreadable newest checkpoint (killed mid-write, corrupted) is skipped with a
    warning in favour of the previous one; a writable Checkpointer (training) also
    renames it to `<step>.unreadable`, kept for inspection, so that the resumed run
    can write that step again. A shape mismatch with the config is a
    CheckpointError: it means the config changed, and silently training from
    scratch would overwrite the user's run.
    """
    steps = [step] if step is not None else self.all_steps()[::-1]
    if not steps:
      raise CheckpointError(f'no checkpoint in {self.directory}; train first with --mode train')
    last_error, skipped = None, []
    for s in steps:
      try:
        self._check_shapes(s, abstract_state)
        state = self.manager.restore(s, args=ocp.args.StandardRestore(abstract_state))
        if skipped and self.writable:
          self._set_aside(skipped)
        return state
      except CheckpointError:
        raise
      except FileNotFoundError as e:
        last_error = e
      except ValueError as e:
        if 'shape' in str(e).lower():
          raise CheckpointError(
              f'checkpoint {self.directory}/{s} does not match the config ({_first_line(e)}); '
              'use the config it was trained with or a fresh --workdir') from None
        last_error = e
      except Exception as e:  # pylint: disable=broad-except  (corrupt files raise many types)
        last_error = e
      logging.warning('Skipping unreadable checkpoint %s/%s: %s', self.directory, s,
                      _first_line(last_error))
      skipped.append(s)
    raise CheckpointError(f'no readable checkpoint in {self.directory}: {_first_line(last_error)}')

  def _set_aside(self, steps: list[int]) -> None:
    """Renames unreadable checkpoints out of Orbax's sight (process 0; the others wait)."""
    if jax.process_index() == 0:
      for s in steps:
        path = os.path.join(self.directory, str(s))
        os.replace(path, f'{path}.unreadable')
        logging.warning('Moved unreadable checkpoint %s to %s.unreadable', path, path)
    if jax.process_count() > 1:
      from jax.experimental import multihost_utils
      multihost_utils.sync_global_devices('checkpointing.set_aside')
    self.manager.reload()

  def _check_shapes(self, step: int, abstract_state: Any) -> None:
    """CheckpointError naming the first array whose stored shape differs from the config's.

    Read from the checkpoint's metadata before any array: an Orbax read that fails
    on a shape leaves reader threads behind, which print tracebacks after the error.
    """
    metadata = self.manager.item_metadata(step)
    if getattr(metadata, 'tree', None) is None:
      return   # no metadata to compare against; Orbax's own checks still apply
    stored, wanted = _shapes(metadata.tree), _shapes(abstract_state)
    for path in sorted(set(stored) | set(wanted)):
      if stored.get(path) != wanted.get(path):
        raise CheckpointError(
            f'checkpoint {self.directory}/{step} does not match the config: '
            f'{"/".join(path)} is {stored.get(path, "absent")} there and '
            f'{wanted.get(path, "absent")} in the config; use the config it was trained with '
            'or a fresh --workdir')

  def close(self) -> None:
    self.manager.wait_until_finished()
    self.manager.close()


def _first_line(e: BaseException | None) -> str:
  return str(e).strip().splitlines()[0] if e and str(e).strip() else type(e).__name__


def _shapes(tree: Any) -> dict[tuple[str, ...], tuple[int, ...]]:
  """{path: shape} of a pytree's arrays, with dict keys, attributes and indices as strings."""
  def name(k):
    return str(getattr(k, 'key', getattr(k, 'name', getattr(k, 'idx', k))))
  return {tuple(map(name, path)): tuple(x.shape)
          for path, x in jax.tree_util.tree_flatten_with_path(tree)[0]}


def abstract_like(tree: Any, sharding) -> Any:
  """ShapeDtypeStructs with `sharding`, to restore straight into device layout."""
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), tree)
