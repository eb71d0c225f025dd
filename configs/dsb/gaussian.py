"""Gaussian -> Gaussian in d dimensions (Shi et al. 2023, Sec. 7.1); the argument is d.

pi_0 = N(-0.1 1, I), pi_1 = N(0.1 1, I), Brownian reference sigma W_t on [0, 1] with
sigma = 1, N = 20 steps. In DSB's chain X_{k+1} = F_k(X_k) + sqrt(2 gamma) Z that reference
has sum_k gamma_k = sigma^2 / 2. One affine map per step and direction: the Gaussian SB's
transitions are affine-Gaussian, so the family contains the answer.

    python main.py --config configs/dsb/gaussian.py:50 --workdir runs/dsb_g50 --mode dsb
"""
from configs.dsb.defaults import get_dsb_configs

SIGMA = 1.


def get_config(dim: str = '5'):
  config = get_dsb_configs()
  config.data.dataset = 'gaussian'
  config.data.dim = int(dim)
  config.dsb.data_mean, config.dsb.data_var = -0.1, 1.
  config.dsb.prior, config.dsb.prior_mean, config.dsb.prior_var = 'gaussian', 0.1, 1.
  config.dsb.reference = 'brownian'
  config.dsb.num_steps = 20
  config.dsb.gamma_schedule = 'constant'
  config.dsb.gamma_total = SIGMA ** 2 / 2.
  config.dsb.network = 'affine'
  config.model.name = 'mlp'    # unused with the affine network; dsb.network=model trains this MLP
  config.dsb.n_ipf = 5
  config.dsb.num_iter = 1000
  config.dsb.batch_size = 512
  # Each A_k has d^2 entries: the KL left by fitting them grows like d^2 / (examples per
  # half), so the cache is large (4 refreshes x 8000 trajectories x 20 steps per half) and
  # the lr moderate (Adam's jitter is ~lr per entry). At d = 50 this took KL(p1||p1*) from
  # 0.96 (2000 trajectories, lr 1e-2) to 0.22 in our measurements.
  config.dsb.cache_size = 8000
  config.dsb.cache_refresh = 250
  config.dsb.num_samples = 5000
  config.optim.lr = 3e-3
  config.optim.warmup = 50
  return config
