"""Noise-level classifier (MLP, 1000 levels 0.01..5) on the `gmm` toy, for DMCMC.

    python main.py --config configs/dmcmc/toy_gmm_classifier.py --workdir runs/dmcmc_toy/classifier --mode train
"""
from configs.dmcmc import toy_gmm_score


def get_config():
  config = toy_gmm_score.get_config()
  config.training.objective = 'noise_classifier'
  config.model.name = config.dmcmc.classifier_model
  config.training.n_iters = 4000
  return config
