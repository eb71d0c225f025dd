"""NCSN v1 (Song & Ermon 2019) on the bundled digits: SMLD loss, annealed Langevin sampling.

    python main.py --config configs/ncsn/digits_ncsnpp_discrete.py --workdir runs/digits_ncsn --mode train

The paper's settings: L = 10 geometric noise levels sigma 1 -> 0.01, T = 100
Langevin steps per level with eps = 2e-5 (Algorithm 1), started from U[0, 1]
(data in [0, 1], not centred), no final denoising step (NCSNv2 added it:
--config.sampling.noise_removal=True). NFE = L T = 1000. The network is a tiny
NCSN++ with discrete level labels, not the paper's RefineNet.

Tiny variant (seconds; configs/tiny.py):

    python main.py --config configs/ncsn/digits_ncsnpp_discrete.py:tiny --workdir runs/tiny_ncsn_digits_ncsnpp_discrete --mode train
"""
from configs import tiny
from configs.default_digits import get_digits_configs


def get_config(arg: str | None = None):
  config = get_digits_configs()
  config.training.sde = 'vesde'
  config.training.continuous = False      # SMLD's loss over the 10 levels (Eq. 5-6)
  config.data.centered = False
  config.model.name = 'ncsnpp'
  config.model.sigma_max = 1.
  config.model.sigma_min = 0.01
  config.model.num_scales = 10
  config.model.scale_by_sigma = True
  config.sampling.method = 'ald_ncsn'
  config.sampling.n_steps_each = 100
  config.sampling.step_lr = 2e-5          # the paper's eps
  config.sampling.noise_removal = False
  return tiny.variant(config, arg)
