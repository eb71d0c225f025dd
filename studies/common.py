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
import xla_cpu  # noqa: E402,F401  (first: XLA:CPU flags must be set before JAX starts)

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


def save_figure(fig, path: str, dpi: int = 120) -> None:
  """Lays out, writes and closes a study's figure."""
  fig.tight_layout()
  fig.savefig(path, dpi=dpi)
  pyplot().close(fig)


def dump(obj: Any) -> str:
  return json.dumps(obj, indent=1, default=float)


# ----------------------------------------------------------------------------- added for the
# score-SDE / NCSN / conditional studies (additive: nothing above changes)

def define_models_flag() -> None:
  """--models: where trained models live; '' = <out>/models. Studies that train the same
  config with the same sizes may share one directory (a model is trained once, then reused)."""
  flags.DEFINE_string('models', '', "Trained models' directory; '' = <out>/models.")


def model_dir(tag: str) -> str:
  """<--models or <out>/models>/<tag>."""
  root = FLAGS.models if 'models' in FLAGS and FLAGS.models else os.path.join(FLAGS.out, 'models')
  return os.path.join(root, tag)


def study_training(config: ml_collections.ConfigDict, n_iters: int) -> ml_collections.ConfigDict:
  """Sizes `config`'s training for a study, in place: n_iters steps, one checkpoint and one
  test-loss evaluation at the end, no snapshot sample grids (they cost sampling time)."""
  t = config.training
  t.n_iters = int(n_iters)
  t.snapshot_freq = t.snapshot_freq_for_preemption = t.eval_freq = int(n_iters)
  t.log_freq = max(1, min(t.log_freq, int(n_iters)))
  t.snapshot_sampling = False
  config.optim.warmup = min(config.optim.warmup, max(1, int(n_iters) // 4))
  return config


def images01(config: ml_collections.ConfigDict, x) -> np.ndarray:
  """Model-space images [N, H, W, C] -> numpy in [0, 1] (inverse scaler, then clipped)."""
  import datasets  # pylint: disable=g-import-not-at-top
  return np.clip(np.asarray(datasets.get_data_inverse_scaler(config)(np.asarray(x))), 0., 1.)


def real_digits_fd(config: ml_collections.ConfigDict, n: int | None = None,
                   draws: int = 3) -> dict[str, Any]:
  """The FD floor: digits FD of real test digits against train (`mean_se` over `draws`
  random subsets of n of the 297 test digits; n = None: all of them, one draw). The FD of
  n samples is biased upwards by O(1/n), so a sample FD is compared with the floor at its n."""
  import datasets  # pylint: disable=g-import-not-at-top
  test = datasets.digits('test', config.data.image_size)[0]
  if n is None or n >= len(test):
    return mean_se([digits_fd(config, test)])
  rng = np.random.default_rng(0)
  return mean_se(digits_fd(config, test[rng.choice(len(test), n, replace=False)])
                 for _ in range(draws))


def load_average() -> list[float]:
  """os.getloadavg() as a list (1, 5, 15 minutes): the machine is shared."""
  return [float(v) for v in os.getloadavg()]


def save_grid(path: str, images: np.ndarray, title: str = '') -> None:
  """A PNG of images [N, H, W, C] in [0, 1] tiled in one grid (io_utils.image_grid)."""
  plt = pyplot()
  grid = io_utils.image_grid(np.asarray(images))
  fig, ax = plt.subplots(figsize=(4, 4))
  ax.imshow(grid.squeeze(-1) if grid.shape[-1] == 1 else grid, cmap='gray', vmin=0, vmax=255)
  ax.set_axis_off()
  ax.set_title(title, fontsize=8)
  fig.savefig(path, dpi=120, bbox_inches='tight')
  plt.close(fig)
