"""NCSN v1 (Song & Ermon 2019) on the bundled digits: the RefineNet, SMLD loss, annealed Langevin.

    python main.py --config configs/ncsn/digits_ncsn_discrete.py --workdir runs/digits_ncsn --mode train

The paper's recipe (L = 10 geometric levels sigma 1 -> 0.01, Algorithm 1 with
T = 100 steps per level and eps = 2e-5, no final denoising) with the paper's
network, CondInstanceNorm++ RefineNet conditioned on the level index, at
ngf 16 so that it trains on 2 CPU cores.

Tiny variant (seconds; configs/tiny.py):

    python main.py --config configs/ncsn/digits_ncsn_discrete.py:tiny --workdir runs/tiny_ncsn_digits_ncsn_discrete --mode train
"""
from configs import published, tiny
from configs.default_digits import get_digits_configs


def get_config(arg: str | None = None):
  config = get_digits_configs()
  published.refinenet(config, 'ncsn', nf=16)
  config.model.sigma_max = 1.
  config.model.num_scales = 10
  config.optim.lr = 1e-3
  config.sampling.method = 'ald_ncsn'
  config.sampling.n_steps_each = 100
  config.sampling.step_lr = 2e-5
  config.sampling.noise_removal = False
  return tiny.variant(config, arg)
