"""benchmarks/profile_ops.parse_hlo: conv kinds and FLOPs read off compiled HLO."""
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), 'benchmarks'))
import profile_ops  # noqa: E402


def test_conv_forward_and_both_gradients_are_classified_with_exact_flops():
  # One 3x3 'SAME' conv, B=2, 8x8, 4 -> 6 channels: each of forward, input gradient and
  # weight gradient is 2 * B * H * W * 9 * C_in * C_out multiply-adds (up to the zero
  # padding XLA keeps in the window, which the HLO counts as work too).
  b, h, cin, cout = 2, 8, 4, 6
  x, w = jnp.ones((b, h, h, cin)), jnp.ones((3, 3, cin, cout))

  def f(x, w):
    y = jax.lax.conv_general_dilated(x, w, (1, 1), 'SAME',
                                     dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
    return jnp.sum(jnp.sin(y))

  grad = jax.jit(jax.grad(f, argnums=(0, 1)))
  info = profile_ops.parse_hlo(grad.lower(x, w).compile().as_text())
  flops = {}
  for i in info.values():
    if i['kind'].startswith('conv'):
      flops[i['kind']] = flops.get(i['kind'], 0.) + i['flops']
  expected = 2. * b * h * h * 9 * cin * cout
  assert set(flops) == {'conv forward', 'conv input-gradient', 'conv weight-gradient'}, flops
  for kind, value in flops.items():
    np.testing.assert_allclose(value, expected, rtol=0, err_msg=kind)
