"""Noise-level classifier for the VE digits model (levels 0.01..8 on data in [0, 1]).

    python main.py --config configs/dmcmc/digits_classifier_ve.py --workdir runs/dmcmc_digits_ve/classifier --mode train
"""
from configs.dmcmc import digits_score_ve


def get_config():
  config = digits_score_ve.get_config()
  config.training.objective = 'noise_classifier'
  config.model.name = config.dmcmc.classifier_model
  return config
