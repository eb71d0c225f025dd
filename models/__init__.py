"""Score networks, registered by name in the plain dict `MODELS`.

A network is a bare function of (x, noise label): `module(x, labels, train)`
returns an array shaped like `x`. How that output becomes a score lives in one
place only, `models.utils.get_score_fn`.
"""
import flax.linen as nn
import ml_collections

from errors import lookup
from models import ddpm, mlp, ncsn, ncsnpp
from models import noise_classifier, time_classifier

MODELS = {
    'ncsnpp': ncsnpp.NCSNpp,
    'ddpm': ddpm.DDPM,
    'ncsn': ncsn.NCSN,
    'ncsnv2_64': ncsn.NCSNv2_64,
    'ncsnv2_128': ncsn.NCSNv2_128,
    'ncsnv2_256': ncsn.NCSNv2_256,
    'mlp': mlp.ScoreMLP,
    # DMCMC's noise-level classifiers: logits [B, n_levels], not scores (dmcmc/classifier.py).
    'noise_mlp': noise_classifier.NoiseMLP,
    'noise_cnn': noise_classifier.NoiseCNN,
    # Time-dependent class classifiers p_t(y | x(t)): logits [B, K] (guidance.py).
    'time_mlp': time_classifier.TimeMLP,
    'time_cnn': time_classifier.TimeCNN,
}


def create_model(config: ml_collections.ConfigDict) -> nn.Module:
  """Builds the network named by `config.model.name` (ConfigError if unknown)."""
  cls = lookup(MODELS, config.model.name, 'model.name')
  return cls.from_config(config)
