"""Tests for the score networks: models/ncsnpp.py and mlp.py (their layers:
tests/test_layers.py), and the helpers both files use."""
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs.defaults import get_default_configs
from errors import ConfigError
from models import create_model, mlp, ncsnpp

# Eager initialisation compiles one kernel per parameter shape (~20 s for the
# tiny U-Net on CPU) and a default jit spends ~10 s optimising code that runs
# a few times. XLA's cheapest settings compile it in ~3 s.
_CHEAP_COMPILE = {'xla_backend_optimization_level': 0,
                  'xla_llvm_disable_expensive_passes': True}


def cheap_jit(fn, **kwargs):
  return jax.jit(fn, compiler_options=_CHEAP_COMPILE, **kwargs)


def make_config(*overrides: dict):
  """The default config with `{'group.field': value}` overrides applied."""
  config = get_default_configs()
  for override in overrides:
    for key, value in override.items():
      group, field = key.split('.')
      config[group][field] = value
  return config


def tiny_ncsnpp(**model_fields):
  return make_config(ncsnpp.tiny_config_overrides(),
                     {f'model.{k}': v for k, v in model_fields.items()})


def tiny_mlp(**model_fields):
  return make_config(mlp.tiny_config_overrides(),
                     {f'model.{k}': v for k, v in model_fields.items()})


def init(module, *args):
  """Initialises `module` on args; returns (params, output at init)."""
  out, params = cheap_jit(module.init_with_output)(jax.random.PRNGKey(0), *args)
  return params, out


@functools.lru_cache(maxsize=None)
def apply_fn(model, train=False):
  """A jitted `(params, x, labels, rngs=None) -> output` for `model`."""
  return cheap_jit(lambda params, x, labels, rngs=None: model.apply(
      params, x, labels, train=train, rngs=rngs))


def random_params(model, x, labels):
  """N(0, 0.1^2) parameters of the right shapes, for properties that hold
  for any parameters (drawn with NumPy: no per-shape JAX compilation)."""
  rng = np.random.default_rng(0)
  shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0), x, labels)
  return jax.tree.map(
      lambda s: jnp.asarray(0.1 * rng.standard_normal(s.shape), s.dtype), shapes)


def num_params(tree) -> int:
  return sum(math.prod(p.shape) for p in jax.tree_util.tree_leaves(tree))


def count_params(model, x, labels) -> int:
  """Parameter count from shapes alone (jax.eval_shape: nothing is computed)."""
  return num_params(jax.eval_shape(model.init, jax.random.PRNGKey(0), x, labels))


def images(batch=2, size=8, channels=1, seed=1):
  return jax.random.normal(jax.random.PRNGKey(seed),
                           (batch, size, size, channels))


# ---------------------------------------------------------------- NCSN++ ---


@pytest.fixture(scope='module')
def tiny_net():
  """A tiny NCSN++ with a real output conv and strong dropout, built once.

  Returns (model, params, x, labels, output at init).
  """
  model = create_model(tiny_ncsnpp(init_scale=1., dropout=0.5,
                                   embedding_type='fourier'))
  x, labels = images(), jnp.array([0.5, 3.])
  params, out = init(model, x, labels)
  return model, params, x, labels, out


def test_ncsnpp_output_shape_dtype_and_scale(tiny_net):
  *_, x, _, out = tiny_net
  assert out.shape == x.shape and out.dtype == x.dtype
  assert np.all(np.isfinite(out)) and np.abs(out).max() > 1e-1


def test_ncsnpp_init_scale_zero_gives_near_zero_output():
  # score_sde initialises the output conv at scale 1e-10 when init_scale=0.
  model = create_model(tiny_ncsnpp(resblock_type='ddpm', init_scale=0.,
                                   embedding_type='positional'))
  x = images()
  _, out = init(model, x, jnp.array([0.5, 3.]))
  assert out.shape == x.shape and out.dtype == x.dtype
  assert np.abs(out).max() < 1e-3


def test_ncsnpp_label_conditioning(tiny_net):
  model, params, x, *_ = tiny_net
  apply = apply_fn(model)
  out_a = apply(params, x, jnp.array([1., 1.]))
  out_b = apply(params, x, jnp.array([5., 5.]))
  assert np.abs(out_a - out_b).max() > 1e-3


def test_ncsnpp_unconditional_ignores_labels():
  model = create_model(tiny_ncsnpp(conditional=False))
  x = images()
  params = random_params(model, x, jnp.zeros(2))
  apply = apply_fn(model)
  np.testing.assert_array_equal(apply(params, x, jnp.array([1., 1.])),
                                apply(params, x, jnp.array([5., 5.])))
  # No label pathway at all: no Dense layers exist.
  assert not any('Dense' in str(path) for path, _ in
                 jax.tree_util.tree_leaves_with_path(params))


def test_ncsnpp_dropout_only_in_train(tiny_net):
  model, params, x, labels, _ = tiny_net
  key1, key2 = jax.random.PRNGKey(1), jax.random.PRNGKey(2)
  train, evaluate = apply_fn(model, train=True), apply_fn(model, train=False)
  train1 = train(params, x, labels, {'dropout': key1})
  train2 = train(params, x, labels, {'dropout': key2})
  assert np.abs(train1 - train2).max() > 1e-3
  eval1 = evaluate(params, x, labels, {'dropout': key1})
  eval2 = evaluate(params, x, labels, {'dropout': key2})
  np.testing.assert_array_equal(eval1, eval2)
  np.testing.assert_array_equal(eval1, evaluate(params, x, labels))


def test_ncsnpp_batch_elements_are_independent(tiny_net):
  # GroupNorm normalises per example, so permuting the batch permutes outputs.
  model, params, x, labels, _ = tiny_net
  apply, perm = apply_fn(model), np.array([1, 0])
  np.testing.assert_allclose(apply(params, x[perm], labels[perm]),
                             apply(params, x, labels)[perm], atol=1e-5)


def test_ncsnpp_uncentered_input_is_mapped_to_minus_one_one(tiny_net):
  model, params, _, labels, _ = tiny_net
  x = jax.random.uniform(jax.random.PRNGKey(3), (2, 8, 8, 1))
  assert not model.centered  # data.centered defaults to False.
  centered, uncentered = apply_fn(model.clone(centered=True)), apply_fn(model)
  np.testing.assert_allclose(uncentered(params, x, labels),
                             centered(params, 2 * x - 1, labels), atol=1e-5)


def _conv(k, cin, cout):
  return k * k * cin * cout + cout


def _resblock(cin, cout, temb, shortcut):
  """GroupNorm, conv3x3, Dense(temb), GroupNorm, conv3x3, optional shortcut."""
  count = 2 * cin + _conv(3, cin, cout) + temb * cout + cout + 2 * cout
  return count + _conv(3, cout, cout) + (cin * cout + cout if shortcut else 0)


def _attn(c):
  return 2 * c + 4 * (c * c + c)


def test_ncsnpp_tiny_parameter_count_by_hand():
  # nf=8, ch_mult=(1, 2), one block per level, attention at 4x4, 1 channel.
  temb = 32  # 4 * nf
  biggan = sum([
      8 * temb + temb + temb * temb + temb,  # positional embedding MLP
      _conv(3, 1, 8),  # input conv
      _resblock(8, 8, temb, False),  # 8x8
      _resblock(8, 8, temb, True),  # down: always a 1x1 shortcut
      _resblock(8, 16, temb, True), _attn(16),  # 4x4
      _resblock(16, 16, temb, False), _attn(16),  # middle
      _resblock(16, 16, temb, False),
      _resblock(32, 16, temb, True), _resblock(24, 16, temb, True),  # 4x4 up
      _attn(16),
      _resblock(16, 16, temb, True),  # up: always a 1x1 shortcut
      _resblock(24, 8, temb, True), _resblock(16, 8, temb, True),  # 8x8 up
      2 * 8 + _conv(3, 8, 1),  # output GroupNorm and conv
  ])
  # 'ddpm' blocks resample with separate convs and skip the no-op shortcut.
  ddpm = (biggan - _resblock(8, 8, temb, True) + _conv(3, 8, 8)
          - _resblock(16, 16, temb, True) + _conv(3, 16, 16))
  x, labels = images(), jnp.ones(2)
  for resblock_type, expected in [('biggan', biggan), ('ddpm', ddpm)]:
    model = create_model(tiny_ncsnpp(resblock_type=resblock_type))
    assert count_params(model, x, labels) == expected, resblock_type
  # Fourier features add their (frozen) frequencies W and double the width.
  model = create_model(tiny_ncsnpp(embedding_type='fourier'))
  assert count_params(model, x, labels) == biggan + 8 + 8 * temb


def _cifar_count(**model_fields):
  config = make_config({'data.image_size': 32, 'data.num_channels': 3,
                        'model.nf': 128, 'model.ch_mult': (1, 2, 2, 2),
                        'model.attn_resolutions': (16,)},
                       {f'model.{k}': v for k, v in model_fields.items()})
  return count_params(create_model(config), jnp.zeros((1, 32, 32, 3)),
                      jnp.zeros((1,)))


def test_ncsnpp_cifar10_parameter_counts_match_published_models():
  # score_sde's configs/vp/cifar10_ddpmpp_continuous.py; the PyTorch
  # checkpoint of this DDPM++ (as used by RectifiedFlow) has 61,804,419.
  assert _cifar_count(num_res_blocks=4, resblock_type='biggan',
                      embedding_type='positional') == 61_804_419
  # score_sde's DDPM on CIFAR-10 (35,218,947, as score_sde_pytorch builds it)
  # is NCSN++ with 'ddpm' blocks, layer for layer as far as counts go; Ho et
  # al.'s own U-Net (35,746,307) attends after each of the 3 up blocks at
  # 16x16 where these attend once: two attention blocks at 256 channels more.
  ncsnpp_ddpm = _cifar_count(num_res_blocks=2, resblock_type='ddpm',
                             embedding_type='positional')
  assert ncsnpp_ddpm == 35_218_947 == 35_746_307 - 2 * _attn(256)


BAD_NCSNPP_CONFIGS = [
    ({'model.embedding_type': 'learned'}, 'model.embedding_type'),
    ({'model.resblock_type': 'resnet'}, 'model.resblock_type'),
    ({'model.nonlinearity': 'tanh'}, 'model.nonlinearity'),
    ({'model.attn_resolutions': (2,)}, 'model.attn_resolutions'),
    ({'data.image_size': 10, 'model.ch_mult': (1, 2, 2),
      'model.attn_resolutions': ()}, 'data.image_size'),
    ({'model.fir': True, 'model.fir_kernel': (1,)}, 'model.fir_kernel'),
    ({'model.progressive': 'skip'}, 'model.progressive'),
    ({'model.progressive_input': 'skip'}, 'model.progressive_input'),
    ({'model.progressive_combine': 'mul'}, 'model.progressive_combine'),
    ({'model.scale_by_sigma': True}, 'model.scale_by_sigma'),   # the default SDE is VP
    ({'model.name': 'unet'}, 'model.name'),
]


@pytest.mark.parametrize('override,field', BAD_NCSNPP_CONFIGS)
def test_ncsnpp_bad_config_raises_one_line_config_error(override, field):
  config = make_config(ncsnpp.tiny_config_overrides(), override)
  with pytest.raises(ConfigError) as info:
    create_model(config)
  message = str(info.value)
  assert field in message and '\n' not in message


def test_ncsnpp_input_shape_must_match_config():
  model = create_model(tiny_ncsnpp())
  with pytest.raises(ConfigError, match='data.image_size'):
    jax.eval_shape(model.init, jax.random.PRNGKey(0), images(size=16),
                   jnp.ones(2))


# ------------------------------------------------------------------- MLP ---


def test_mlp_shape_dtype_and_registry():
  model = create_model(tiny_mlp(init_scale=1.))
  x, labels = jax.random.normal(jax.random.PRNGKey(0), (5, 2)), jnp.ones(5)
  assert isinstance(model, mlp.ScoreMLP)
  _, out = init(model, x, labels)
  assert out.shape == x.shape and out.dtype == x.dtype


@pytest.mark.parametrize('embedding_type', ['positional', 'fourier'])
@pytest.mark.parametrize('conditional', [True, False])
def test_mlp_parameter_count_by_formula(embedding_type, conditional):
  nf, hidden, dim = 8, (16, 16), 2  # tiny_config_overrides
  emb = 2 * nf if embedding_type == 'fourier' else nf
  count = 0
  if conditional:
    count += (nf if embedding_type == 'fourier' else 0)  # Fourier W
    count += emb * 4 * nf + 4 * nf + 4 * nf * 4 * nf + 4 * nf  # two Dense
  width_in = dim
  for width in hidden:
    count += width_in * width + width  # the layer
    count += (4 * nf * width + width) if conditional else 0  # label bias
    width_in = width
  count += width_in * dim + dim  # output layer
  model = create_model(tiny_mlp(embedding_type=embedding_type,
                                conditional=conditional))
  assert count_params(model, jnp.zeros((1, dim)), jnp.zeros((1,))) == count


@pytest.mark.parametrize('conditional', [True, False])
def test_mlp_label_conditioning(conditional):
  model = create_model(tiny_mlp(conditional=conditional, init_scale=1.))
  x = jax.random.normal(jax.random.PRNGKey(0), (4, 2))
  params, _ = init(model, x, jnp.zeros(4))
  apply = apply_fn(model)
  out_a = apply(params, x, jnp.full((4,), 1.))
  out_b = apply(params, x, jnp.full((4,), 500.))
  if conditional:
    assert np.abs(out_a - out_b).max() > 1e-3
  else:
    np.testing.assert_array_equal(out_a, out_b)


def test_mlp_init_scale_zero_gives_near_zero_output():
  x = jax.random.normal(jax.random.PRNGKey(0), (4, 2))
  _, out = init(create_model(tiny_mlp(init_scale=0.)), x, jnp.ones(4))
  assert np.abs(out).max() < 1e-3


@pytest.mark.parametrize('override,field', [
    ({'model.embedding_type': 'learned'}, 'model.embedding_type'),
    ({'model.nonlinearity': 'tanh'}, 'model.nonlinearity'),
    ({'model.hidden_dims': ()}, 'model.hidden_dims'),
])
def test_mlp_bad_config_raises_one_line_config_error(override, field):
  with pytest.raises(ConfigError) as info:
    create_model(make_config(mlp.tiny_config_overrides(), override))
  assert field in str(info.value) and '\n' not in str(info.value)


def test_mlp_input_dim_must_match_config():
  model = create_model(tiny_mlp())
  with pytest.raises(ConfigError, match='data.dim'):
    jax.eval_shape(model.init, jax.random.PRNGKey(0), jnp.zeros((4, 3)),
                   jnp.ones(4))
