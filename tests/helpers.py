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
