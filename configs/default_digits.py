"""Family defaults for scikit-learn's bundled 8x8 digits (1500 train / 297 test).

Sized so that `make demo` trains a real model in a few minutes on 2 CPU cores.
"""
from configs.defaults import get_default_configs


def get_digits_configs():
  config = get_default_configs()
  config.training.batch_size = 64
  config.training.n_iters = 4000
  config.training.log_freq = 100
  config.training.eval_freq = 500
  config.training.snapshot_freq = 2000
  config.training.snapshot_freq_for_preemption = 500
  config.training.n_jitted_steps = 1   # on CPU steps are unrolled: compile time grows with n

  config.sampling.batch_size = 64
  # The papers' 50000 samples are for CIFAR-10/CelebA/LSUN; digits are scored on 1000
  # (the digits FD of the 297 real test digits against train is the yardstick).
  config.eval.num_samples = 1000

  config.data.dataset = 'digits'
  config.data.image_size = 8
  config.data.num_channels = 1
  config.data.centered = True

  config.model.nf = 16
  config.model.ch_mult = (1, 2, 2)
  config.model.num_res_blocks = 1
  config.model.attn_resolutions = (4,)
  config.model.dropout = 0.
  config.model.ema_rate = 0.999

  config.optim.lr = 2e-3
  config.optim.warmup = 200
  return config
