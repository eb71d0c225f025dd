"""Noise-level classifier (small CNN, 1000 levels 0.01..50) on the bundled digits.

    python main.py --config configs/dmcmc/digits_classifier.py --workdir runs/dmcmc_digits/classifier --mode train
"""
from configs.dmcmc import digits_score


def get_config():
  config = digits_score.get_config()
  config.training.objective = 'noise_classifier'
  config.model.name = config.dmcmc.classifier_model
  return config
