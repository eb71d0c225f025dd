"""VE MLP score model on the `gmm` toy, for DMCMC (train first, with the classifier).

    python main.py --config configs/dmcmc/toy_gmm_score.py --workdir runs/dmcmc_toy/score --mode train
"""
from configs.default_toy import get_toy_configs
from configs.dmcmc.defaults import add_dmcmc_configs


def get_config():
  config = add_dmcmc_configs(get_toy_configs())
  config.data.dataset = 'gmm'
  config.training.sde = 'vesde'
  config.training.n_iters = 4000
  config.model.sigma_min = 0.01
  config.model.sigma_max = 5.
  config.model.scale_by_sigma = True
  config.sampling.predictor = 'reverse_diffusion'
  config.sampling.eps = 1e-5
  d = config.dmcmc
  d.sigma_min, d.sigma_max = 0.01, 5.
  d.classifier_hidden_dims = (128, 128)
  d.n_chains, d.num_outputs = 512, 2048
  return config
