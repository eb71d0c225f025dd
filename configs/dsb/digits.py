"""DSB from N(0, I) to the bundled 8x8 digits (small NCSN++ per direction).

    python main.py --config configs/dsb/digits.py --workdir runs/dsb_digits --mode dsb

The prior's mean is the digits' mean image and its variance their average pixel variance
(dsb.estimate_prior), as the reference code does for images.
"""
from configs.default_digits import get_digits_configs
from configs.dsb.defaults import get_dsb_configs


def get_config():
  config = get_dsb_configs()
  digits = get_digits_configs()
  config.data = digits.data
  config.model = digits.model
  config.model.ema_rate = 0.999
  config.dsb.estimate_prior = True
  config.dsb.num_steps = 20
  config.dsb.gamma_min = 1e-3
  config.dsb.gamma_max = 0.05
  config.dsb.n_ipf = 10
  config.dsb.num_iter = 2000
  config.dsb.batch_size = 64
  config.dsb.cache_size = 256
  config.dsb.cache_refresh = 200
  config.dsb.num_samples = 256
  config.optim.lr = 1e-3
  config.optim.warmup = 100
  return config
