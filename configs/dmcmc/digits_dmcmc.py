"""DMCMC on digits with a VP model: needs digits_score.py's and digits_classifier.py's checkpoints.

    python main.py --config configs/dmcmc/digits_dmcmc.py --workdir runs/dmcmc_digits --mode dmcmc
"""
from configs.dmcmc import digits_score


def get_config():
  config = digits_score.get_config()
  config.dmcmc.score_workdir = 'runs/dmcmc_digits/score'
  config.dmcmc.classifier_workdir = 'runs/dmcmc_digits/classifier'
  return config
