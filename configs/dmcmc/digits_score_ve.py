"""NCSN++ (VE, continuous) on the bundled digits, for DMCMC (the reference's own setting: VE).

    python main.py --config configs/dmcmc/digits_score_ve.py --workdir runs/dmcmc_digits_ve/score --mode train

The model is configs/ve/digits_ncsnpp_continuous.py (data in [0, 1], sigma 0.01..8); the
DMCMC ladder spans the same range, since a VE model's VE view is [sigma_min, sigma_max].
"""
from configs.dmcmc import digits_score
from configs.dmcmc.defaults import add_dmcmc_configs
from configs.ve import digits_ncsnpp_continuous


def get_config():
  config = add_dmcmc_configs(digits_ncsnpp_continuous.get_config())
  vp = digits_score.get_config().dmcmc
  d = config.dmcmc
  for field in ('classifier_model', 'classifier_channels', 'classifier_hidden_dims', 'n_chains',
                'num_outputs', 'n_skip', 'integrator', 'integrator_steps'):
    d[field] = vp[field]
  d.sigma_min, d.sigma_max = config.model.sigma_min, config.model.sigma_max
  return config
