"""A small classifier of the bundled 8x8 digits: the feature network of the digits FD.

Inception-v3 knows nothing about 8x8 digits, so for them the Frechet distance
is taken in the penultimate layer of this MLP (the way FID takes Inception's
pool3), which this codebase trains itself on the digits train split:
deterministic (seed 0), optax Adam, a few seconds on CPU. The trained weights
are stored in assets/digits_classifier.npz; regenerate them with

    python -m models.digits_classifier            # writes assets/digits_classifier.npz

which prints the test accuracy. metrics.py loads that file, and trains and
writes it on the fly if it is missing. Not a score network: it is not in
models.MODELS.
"""
from __future__ import annotations

import argparse
import os
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import traverse_util

from errors import CheckpointError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_PATH = os.path.join(REPO, 'assets', 'digits_classifier.npz')
NUM_CLASSES = 10
SIDE = 8                      # sklearn digits are 8x8
TRAIN = dict(seed=0, steps=3000, batch_size=128, lr=1e-3, weight_decay=1e-4)


class DigitsClassifier(nn.Module):
  """Images [B, H, W, 1] in [0, 1] -> (features [B, F], logits [B, 10]).

  Images that are not 8x8 (data.image_size != 8) are resized to 8x8 first
  (bilinear with antialiasing, as the digits loader resizes the other way).
  Features are the last hidden layer after a tanh: bounded in (-1, 1), so
  that KID's kernel (x.y / d + 1)^3 sees inputs of order one, as it does with
  Inception's pool3 features.
  """
  hidden: Sequence[int] = (256, 64)

  @nn.compact
  def __call__(self, x):
    x = jnp.asarray(x, jnp.float32)
    if x.shape[1:3] != (SIDE, SIDE):
      x = jax.image.resize(x, (x.shape[0], SIDE, SIDE, x.shape[-1]), 'bilinear')
    h = x.reshape(x.shape[0], -1)
    for width in self.hidden[:-1]:
      h = nn.swish(nn.Dense(width)(h))
    h = nn.tanh(nn.Dense(self.hidden[-1])(h))
    return h, nn.Dense(NUM_CLASSES)(h)


def _digits(split: str) -> tuple[np.ndarray, np.ndarray]:
  """(images [N, 8, 8, 1] in [0, 1], labels [N]) of datasets.py's fixed split."""
  import datasets  # pylint: disable=g-import-not-at-top
  return datasets.digits(split, SIDE)


def accuracy(params: dict, images: np.ndarray, labels: np.ndarray) -> float:
  _, logits = DigitsClassifier().apply({'params': params}, images)
  return float(jnp.mean(jnp.argmax(logits, -1) == labels))


def train(seed: int = TRAIN['seed'], steps: int = TRAIN['steps']) -> dict:
  """Trains the classifier on the digits train split; deterministic in `seed`.

  Minibatches of TRAIN['batch_size'] are drawn with replacement, and the whole
  loop is one lax.scan.

  Returns:
    The Flax params.
  """
  images, labels = _digits('train')
  model = DigitsClassifier()
  key_init, key_data = jax.random.split(jax.random.PRNGKey(seed))
  params = model.init(key_init, images[:1])['params']
  tx = optax.adamw(TRAIN['lr'], weight_decay=TRAIN['weight_decay'])
  images, labels = jnp.asarray(images), jnp.asarray(labels)

  def step(carry, key):
    params, opt_state = carry
    idx = jax.random.randint(key, (TRAIN['batch_size'],), 0, len(labels))

    def loss_fn(p):
      _, logits = model.apply({'params': p}, images[idx])
      return optax.softmax_cross_entropy_with_integer_labels(logits, labels[idx]).mean()

    grads = jax.grad(loss_fn)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return (optax.apply_updates(params, updates), opt_state), None

  keys = jax.random.split(key_data, steps)
  (params, _), _ = jax.jit(lambda c, k: jax.lax.scan(step, c, k))(
      (params, tx.init(params)), keys)
  return jax.device_get(params)


def save(path: str, params: dict, test_accuracy: float) -> None:
  flat = traverse_util.flatten_dict(params, sep='/')
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  tmp = path + '.tmp'
  with open(tmp, 'wb') as f:
    np.savez(f, test_accuracy=np.float64(test_accuracy),
             **{f'params/{k}': np.asarray(v) for k, v in flat.items()})
  os.replace(tmp, path)


def load(path: str) -> tuple[dict, float]:
  """(params, test accuracy) from a file written by `save`; CheckpointError if unreadable."""
  try:
    with np.load(path) as f:
      flat = {k[len('params/'):]: f[k] for k in f.files if k.startswith('params/')}
      acc = float(f['test_accuracy'])
  except (OSError, ValueError, KeyError) as e:
    raise CheckpointError(f'cannot read the digits classifier {path} ({e}); delete it '
                          'or run `python -m models.digits_classifier --out '
                          f'{path}` to retrain it') from None
  return traverse_util.unflatten_dict(flat, sep='/'), acc


def load_or_train(path: str = '') -> tuple[dict, float]:
  """Loads the classifier from `path` (default DEFAULT_PATH), training and writing it if missing.

  Every process trains the same weights (same seed); only process 0 writes.
  """
  path = path or DEFAULT_PATH
  if os.path.exists(path):
    return load(path)
  params = train()
  acc = accuracy(params, *_digits('test'))
  if jax.process_index() == 0:
    save(path, params, acc)
  return params, acc


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description='Trains the digits FD classifier.')
  parser.add_argument('--out', default=DEFAULT_PATH)
  args = parser.parse_args(argv)
  params = train()
  acc = accuracy(params, *_digits('test'))
  save(args.out, params, acc)
  print(f'wrote {args.out}: test accuracy {acc:.4f} on the {len(_digits("test")[1])} '
        f'test digits (train accuracy {accuracy(params, *_digits("train")):.4f})')


if __name__ == '__main__':
  main()
