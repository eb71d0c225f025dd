"""DSB from one 2-D toy to another (dataset transfer); argument 'data,prior'.

    python main.py --config configs/dsb/toy_transfer.py:moons,8gaussians --workdir runs/dsb_t --mode dsb

The reference is the OU process towards N(m, v) with m, v estimated from the prior toy, so
that the first forward pass already lands near the prior's location and scale.
"""
from configs.dsb import toy


def get_config(pair: str = 'moons,8gaussians'):
  data, prior = pair.split(',')
  config = toy.get_config(data)
  config.dsb.prior = prior
  config.dsb.estimate_prior = True
  return config
