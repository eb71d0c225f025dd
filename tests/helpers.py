"""Tiny configs and subprocess helpers shared by the end-to-end tests."""
import os
import subprocess
import sys

import sde_lib  # noqa: F401  (makes the repo root importable first)
from configs.default_toy import get_toy_configs
from configs.default_digits import get_digits_configs
from models import mlp, ncsnpp

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def apply(config, overrides: dict):
  for key, value in overrides.items():
    group, field = key.split('.')
    setattr(config[group], field, value)
  return config


def tiny_config(sde: str = 'vpsde', image: bool = False, n_iters: int = 1):
  """A config that trains in seconds: tiny MLP on a toy, or tiny NCSN++ on digits."""
  if image:
    config = apply(get_digits_configs(), ncsnpp.tiny_config_overrides())
    config.sampling.batch_size = 4
  else:
    config = apply(get_toy_configs(), mlp.tiny_config_overrides())
    config.data.dataset = 'gmm'
    config.sampling.batch_size = 16
  t = config.training
  t.sde, t.n_iters, t.batch_size, t.n_jitted_steps = sde, n_iters, 8, 1
  t.log_freq = t.eval_freq = t.snapshot_freq_for_preemption = 1
  t.snapshot_freq = max(n_iters, 1)
  config.sampling.num_steps = 5
  if sde == 'vesde':
    config.model.scale_by_sigma = True
    config.model.sigma_max = 5.
    config.sampling.eps = 1e-5
    config.sampling.predictor = 'reverse_diffusion'
  config.model.num_scales = 50
  config.name = f'tests/tiny_{sde}_{"image" if image else "toy"}'
  return config


def run_python(code_or_args, env=None, timeout=300):
  """Runs python in the repo root; returns the CompletedProcess."""
  args = ['-c', code_or_args] if isinstance(code_or_args, str) else list(code_or_args)
  full_env = {**os.environ, 'PYTHONPATH': REPO, 'JAX_PLATFORMS': 'cpu', **(env or {})}
  return subprocess.run([sys.executable] + args, cwd=REPO, env=full_env, capture_output=True,
                        text=True, timeout=timeout)


def host_state(config, shape: tuple, mesh=None, seed: int = 0, scale: float = 0.05):
  """A fresh-run TrainState (step 0) whose float params are host draws of N(0, scale^2).

  For tests that need a checkpoint whose values do not matter: the jitted init of the
  tiny NCSN++ takes ~10 s to compile on CPU (almost all of it the threefry calls of its
  ~100 initialisers); this compiles nothing. The layout is `restore.abstract_state`'s,
  optimizer moments are zero, EMA = params, rng = `restore.init_state_rng(config)`.
  """
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  import parallel  # pylint: disable=g-import-not-at-top
  import restore  # pylint: disable=g-import-not-at-top
  from models import create_model  # pylint: disable=g-import-not-at-top
  mesh = mesh if mesh is not None else parallel.make_mesh()
  abstract = restore.abstract_state(config, create_model(config), shape, mesh)
  draws = np.random.default_rng(seed)

  def draw(a):
    if np.issubdtype(a.dtype, np.floating):
      return draws.normal(0., scale, a.shape).astype(a.dtype)
    return np.zeros(a.shape, a.dtype)

  params = jax.tree.map(draw, abstract.params)
  state = abstract.replace(
      step=np.zeros((), np.int32), params=params, ema_params=params,
      opt_state=jax.tree.map(lambda a: np.zeros(a.shape, a.dtype), abstract.opt_state),
      rng=np.asarray(restore.init_state_rng(config)))
  return jax.device_put(state, parallel.replicated(mesh))
