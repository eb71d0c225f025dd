"""Interleaved A/B of 3x3 convolution formulations on XLA (value and both gradients).

    python benchmarks/conv_variants.py 16           # batch 16; prints JSON
    XLA_FLAGS=--xla_cpu_use_xnnpack=true python benchmarks/conv_variants.py 16   # a flag

Variants, timed alternately in one process (5 windows of 4 calls, medians), on the
DDPM++ (nf 32) shapes [B, 32, 32, 32], [B, 16, 16, 64], [B, 8, 8, 64]:
- `xla`: lax.conv_general_dilated, as the models use;
- `im2col`: the 9 shifted copies concatenated to [B, H, W, 9C], then one matmul (forward
  and, through autodiff, both gradients as matmuls and pad-sums);
- `wgrad_matmul`: XLA's conv forward and input gradient, the weight gradient as the
  im2col matmul (custom VJP).
Each variant's value and gradients are compared with `xla` (max relative error). The
results and conclusions are in docs/performance.md. Flags are compared by running this
script once per XLA_FLAGS value, alternating, since XLA reads them at start-up.
"""
import json
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

DN = ('NHWC', 'HWIO', 'NHWC')
SHAPES = [(32, 32), (16, 64), (8, 64)]   # (H = W, C_in = C_out) of DDPM++ nf 32's levels


def conv_xla(x, w):
  return jax.lax.conv_general_dilated(x, w, (1, 1), 'SAME', dimension_numbers=DN)


def patches(x):
  """[B, H, W, C] -> [B, H, W, 9C]: the 3x3 neighbourhood of each pixel, zero-padded."""
  _, h, wd, _ = x.shape
  xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  return jnp.concatenate([xp[:, i:i + h, j:j + wd, :] for i in range(3) for j in range(3)],
                         axis=-1)


def conv_im2col(x, w):
  return jnp.dot(patches(x), w.reshape(-1, w.shape[-1]))


@jax.custom_vjp
def conv_wgrad_matmul(x, w):
  return conv_xla(x, w)


def _fwd(x, w):
  return conv_xla(x, w), (x, w)


def _bwd(res, dy):
  x, w = res
  _, vjp_x = jax.vjp(lambda x: conv_xla(x, w), x)
  dw = jnp.einsum('bhwk,bhwo->ko', patches(x), dy).reshape(w.shape)
  return vjp_x(dy)[0], dw


conv_wgrad_matmul.defvjp(_fwd, _bwd)
VARIANTS = {'xla': conv_xla, 'im2col': conv_im2col, 'wgrad_matmul': conv_wgrad_matmul}


def main():
  batch = int(sys.argv[1]) if len(sys.argv) > 1 else 16
  rng = np.random.default_rng(0)
  out = {'batch': batch, 'xla_flags': os.environ.get('XLA_FLAGS', ''),
         'load_before': os.getloadavg()[0]}
  for h, c in SHAPES:
    x = jnp.asarray(rng.normal(size=(batch, h, h, c)).astype(np.float32))
    w = jnp.asarray(rng.normal(size=(3, 3, c, c)).astype(np.float32) * 0.1)
    fns, ref, row = {}, None, {}
    for name, conv in VARIANTS.items():
      fns[name] = jax.jit(jax.value_and_grad(lambda x, w, conv=conv: jnp.sum(jnp.sin(conv(x, w))),
                                             argnums=(0, 1)))
      r = jax.block_until_ready(fns[name](x, w))
      ref = r if ref is None else ref
      row[name + '_relerr'] = max(float(jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(b)))
                                  for a, b in zip(jax.tree.leaves(r), jax.tree.leaves(ref)))
    times = {name: [] for name in fns}
    for _ in range(5):
      for name, g in fns.items():   # interleaved: a load change hits every variant
        tic = time.perf_counter()
        for _ in range(4):
          r = g(x, w)
        jax.block_until_ready(r)
        times[name].append((time.perf_counter() - tic) / 4)
    for name in fns:
      row[name + '_ms'] = round(float(np.median(times[name])) * 1e3, 2)
    out[f'{h}x{h}x{c}'] = row
  out['load_after'] = os.getloadavg()[0]
  print(json.dumps(out, indent=1))


if __name__ == '__main__':
  main()
