"""DMCMC on the `gmm` toy: needs the checkpoints of toy_gmm_score.py and toy_gmm_classifier.py.

    python main.py --config configs/dmcmc/toy_gmm_dmcmc.py --workdir runs/dmcmc_toy --mode dmcmc
"""
from configs.dmcmc import toy_gmm_score


def get_config():
  config = toy_gmm_score.get_config()
  config.dmcmc.score_workdir = 'runs/dmcmc_toy/score'
  config.dmcmc.classifier_workdir = 'runs/dmcmc_toy/classifier'
  return config
