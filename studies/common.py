"""What every paper-claim study shares: train a model once, score samples, mean ± SE, write.

A study (`studies/<name>.py`) is one command that trains the models it needs once into
`<out>/models/<tag>` (reused on a rerun: a finished run is detected by its last
checkpoint), measures over several sampling seeds and writes `<out>/<name>.json` and a
PNG beside it. `--quick` shrinks every size so the whole study runs in a few minutes;
it checks the plumbing and the direction of an effect, not its size.
"""
import importlib.util
import json
import os
import sys
import time
from typing import Any, Callable, Iterable

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)

import jax  # noqa: E402
import ml_collections  # noqa: E402
import numpy as np  # noqa: E402
from absl import flags, logging  # noqa: E402

import checkpointing  # noqa: E402
import io_utils  # noqa: E402
import metrics  # noqa: E402
import restore  # noqa: E402

FLAGS = flags.FLAGS


def define_flags(default_out: str) -> None:
  """The flags every study takes: --out, --quick, --seeds."""
  flags.DEFINE_string('out', default_out, 'Study directory: models/, the JSON and the PNG.')
  flags.DEFINE_bool('quick', False, 'Every size shrunk: a few minutes, plumbing only.')
  flags.DEFINE_integer('seeds', 3, 'Sampling seeds per cell (mean ± standard error).')


def load_config(path: str, arg: str | None = None) -> ml_collections.ConfigDict:
  """`get_config(arg)` of a config file relative to the repo root (as `--config path:arg`)."""
  full = os.path.join(ROOT, path)
  spec = importlib.util.spec_from_file_location(
      'study_cfg_' + path.replace('/', '_').replace('.', '_'), full)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config(arg) if arg is not None else module.get_config()
  config.name = os.path.splitext(os.path.relpath(full, os.path.join(ROOT, 'configs')))[0]
  return config


def is_trained(config: ml_collections.ConfigDict, workdir: str) -> bool:
  """Whether `workdir` holds the checkpoint of step training.n_iters."""
  if not os.path.isdir(os.path.join(workdir, 'checkpoints')):
    return False
  ckpt = checkpointing.Checkpointer(workdir, create=False)
  try:
    return ckpt.latest_step() == config.training.n_iters
  finally:
    ckpt.close()


def train_once(config: ml_collections.ConfigDict, workdir: str) -> float:
  """Trains `config` into `workdir` unless already done; returns the wall seconds spent."""
  if is_trained(config, workdir):
    logging.info('reusing the trained model in %s', workdir)
    return 0.
  import train  # pylint: disable=g-import-not-at-top  (only studies that train need it)
  tic = time.time()
  train.train_and_evaluate(config, workdir)
  return time.time() - tic


def trained_run(config: ml_collections.ConfigDict, workdir: str) -> tuple[restore.Run, float]:
  """`train_once`, then the EMA params restored: (Run, training seconds)."""
  seconds = train_once(config, workdir)
  return restore.restore_run(config, workdir), seconds


def digits_fd(config: ml_collections.ConfigDict, images: np.ndarray) -> float:
  """The digits FD of images [N, 8, 8, 1] in [0, 1] against the train split (metrics)."""
  return float(metrics.sample_quality(config, images)['digits_fd'])


def mean_se(values: Iterable[float]) -> dict[str, Any]:
  """{'mean', 'se', 'n', 'values'}: the standard error is std(ddof=1)/sqrt(n); NaN if n < 2."""
  v = np.asarray(list(values), np.float64)
  se = float(v.std(ddof=1) / np.sqrt(len(v))) if len(v) > 1 else float('nan')
  return {'mean': float(v.mean()), 'se': se, 'n': int(len(v)), 'values': v.tolist()}


def fmt(cell: dict[str, Any], digits: int = 3) -> str:
  """'mean ± se' of a `mean_se` cell."""
  return f"{cell['mean']:.{digits}f} ± {cell['se']:.{digits}f}"


def over_seeds(fn: Callable[[int], float], seeds: int) -> dict[str, Any]:
  """`mean_se` of fn(seed) for seed = 0..seeds-1."""
  return mean_se(fn(s) for s in range(seeds))


def write(out_dir: str, name: str, payload: dict[str, Any], config=None) -> str:
  """<out_dir>/<name>.json with the run metadata (git commit, devices, date); returns the path."""
  os.makedirs(out_dir, exist_ok=True)
  path = os.path.join(out_dir, name + '.json')
  payload = dict(payload, quick=bool(FLAGS.quick), seeds=int(FLAGS.seeds),
                 devices=jax.device_count(), load_average=os.getloadavg())
  io_utils.write_json(path, payload, config)
  logging.info('wrote %s', path)
  return path


def pyplot():
  """matplotlib.pyplot on the Agg backend (no display on a server)."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  return plt


def dump(obj: Any) -> str:
  return json.dumps(obj, indent=1, default=float)
