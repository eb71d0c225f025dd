"""DSB family defaults: configs/defaults.py plus the `dsb.*` group.

pi_0 (grid point 0) is `data.dataset` ('gaussian' and 'letters' are DSB-side sources,
see dsb/data.py); pi_1 (grid point N) is `dsb.prior`. The optimizer is `optim.*`
(Adam with warm-up and clipping, fresh for every half-iteration), the EMA `model.ema_*`.
"""
from configs.defaults import get_default_configs
import ml_collections


def get_dsb_configs() -> ml_collections.ConfigDict:
  config = get_default_configs()
  config.dsb = d = ml_collections.ConfigDict()
  d.n_ipf = 10                 # IPF iterations (each: a backward then a forward half)
  d.num_iter = 2000            # training steps per half-iteration
  d.batch_size = 256
  d.cache_size = 1000          # trajectories per cache refresh (N pairs each)
  d.cache_refresh = 500        # steps between cache refreshes
  d.warm_start = True          # start each half from that direction's previous network
  d.num_steps = 20             # N
  d.gamma_schedule = 'linear'  # constant | linear | geometric (the last two: symmetric ramps)
  d.gamma_min = 1e-2
  d.gamma_max = 0.1
  d.gamma_total = 0.           # > 0: rescale the grid so that sum gamma_k = gamma_total
  d.reference = 'ou'           # ou (Langevin towards N(m, v)) | brownian
  d.prior = 'gaussian'         # 'gaussian' or a dataset name (dataset transfer)
  d.prior_mean = 0.
  d.prior_var = 1.
  d.estimate_prior = False     # m, v from the prior dataset (or from the data if prior='gaussian')
  d.estimate_size = 10000      # examples used to estimate m, v
  d.data_mean = 0.             # data.dataset='gaussian': pi_0 = N(data_mean 1, data_var I)
  d.data_var = 1.
  d.network = 'model'          # model (config.model: mlp / ncsnpp) | affine (per-step A_k x + c_k)
  d.log_freq = 100
  d.num_samples = 2000         # samples per iteration for pictures and metrics
  d.sw_projections = 256
  d.max_to_keep = 2

  config.model.ema_rate = 0.999
  config.model.dropout = 0.
  config.optim.lr = 1e-3
  config.optim.warmup = 100
  return config


def get_config():
  """The family defaults as a runnable config: N(0, I) -> 2-D moons with the MLP.

      python main.py --config configs/dsb/defaults.py --workdir runs/dsb --mode dsb
  """
  config = get_dsb_configs()
  config.data.dataset = 'moons'
  config.model.name = 'mlp'
  return config
