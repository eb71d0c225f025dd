"""DDPM++ (VP, continuous) on the bundled digits, for DMCMC through the VE view.

    python main.py --config configs/dmcmc/digits_score.py --workdir runs/dmcmc_digits/score --mode train
"""
from configs.default_digits import get_digits_configs
from configs.dmcmc.defaults import add_dmcmc_configs


def get_config():
  config = add_dmcmc_configs(get_digits_configs())
  config.training.sde = 'vpsde'
  d = config.dmcmc
  # VP's VE view spans [0, ve_sigma(1) = 152]; data are centred digits in [-1, 1].
  d.sigma_min, d.sigma_max = 0.01, 50.
  d.classifier_model = 'noise_cnn'
  d.classifier_channels = (32, 64)
  d.classifier_hidden_dims = (256,)
  d.n_chains, d.num_outputs = 64, 64
  d.n_skip = 1      # the default: one DLG step per output keeps each output a draw of the joint
  d.integrator = 'edm_heun'
  d.integrator_steps = 10
  return config
