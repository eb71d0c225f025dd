"""Convolutions and per-pixel matmuls whose weight gradient transposes the input, not the cotangent.

The weight gradient of y = conv(x, w) (or of the per-pixel matmul y = x @ w) contracts
the input x and the cotangent g over the batch and the pixels. XLA:CPU's matmul and
convolution kernels want that contracted dimension minor in one operand and major in
the other, so one of x and g is transposed first. JAX's transpose rules put the
cotangent first (`dot_general(g, x)`; the convolution's weight gradient needs both
operands batch-minor), so XLA transposes g. g is the output of a chain of elementwise
backward work (GroupNorm and swish gradients, residual sums, dropout masks), and XLA
fuses that whole chain into the transposing copy: it recomputes it, once more than
the input gradient already does, in a cache-hostile order. In DDPM++ at batch 64 two
such copies in the attention blocks' backward pass took 40-55 ms each (fusions of up
to 55 operands; `benchmarks/profile_ops.py`).

Here the weight's tangent is written with x^T, a transposed copy of x made in the
forward pass, so that its transpose (the weight gradient) reads x^T and g in the
layouts XLA wants, and g is used as it is:

- 1x1, stride 1 (the NIN, conv1x1): the tangent is x^T [C_in, 1, 1, M] convolved 1x1 with
  the weight's tangent; its transpose is a 1x1 convolution of x^T with g viewed as
  [1, 1, M, C_out] (a bitcast), which XLA rewrites as the plain matmul x^T @ g.
- other convolutions: the tangent is conv(x^T [C_in, H, W, N] read as 'CHWN', dw); its
  transpose is the weight-gradient convolution with x^T already in the 'b01f' layout
  (C_in as its batch), so only g is rearranged, as a plain copy.

Values, both gradients and JVPs are those of the lax ops (tests/test_weight_grad.py, float64).
`jax.custom_jvp`, not `custom_vjp`: forward mode (the likelihood's divergence) and vmap
work as for any lax op, and with symbolic zeros the weight tangent, x^T included, is not
built when the weights are not differentiated (sampling, likelihood). Measured in
docs/performance.md (benchmarks/weight_grad.py: the DDPM++ train step 1.035-1.07x faster
at batch 16 and 1.04x at batch 64; the two attention-block copies disappear from the trace).

Only on XLA:CPU: elsewhere (GPU, TPU) `dense` and `conv_general_dilated` are the plain
lax ops, since cuDNN and the TPU compiler take the weight gradient's operands in their
own layouts and the forward-pass transpose would be wasted work.

`materialize` (used on every residual sum, `layers.skip_sum`) deals with the rest of the
same fusion problem: XLA:CPU copies an elementwise producer into each of its consumers,
and a U-Net's residual stream, in either pass, is a chain of elementwise sums. So every
consumer of a block's output or cotangent -- GroupNorm's sums, the transposes feeding
weight gradients, the next block -- recomputed the sums of all blocks before it at that
resolution (fusions of up to 77 operands in the DDPM++ step at batch 16). Written to a
buffer of its own at each sum, the step spends 10% less CPU time (docs/performance.md).
"""
import contextlib
import functools

import jax
import jax.numpy as jnp
from jax import lax
from jax.custom_derivatives import SymbolicZero

_NHWC = ('NHWC', 'HWIO', 'NHWC')


def _flat_weight_tangent(x: jax.Array, w_dot: jax.Array) -> jax.Array:
  """x [..., C_in] @ w_dot [C_in, C_out], written so that its transpose is x^T @ g."""
  c_in = x.shape[-1]
  x_t = x.reshape(-1, c_in).T.reshape(c_in, 1, 1, -1)               # [C_in, 1, 1, M]
  out = lax.conv_general_dilated(x_t, w_dot.reshape(1, 1, *w_dot.shape), (1, 1), 'VALID',
                                 dimension_numbers=('CHWN', 'HWIO', 'NHWC'))  # [M, 1, 1, C_out]
  return out.reshape(x.shape[:-1] + (w_dot.shape[-1],))


def _add(a, b):
  return b if a is None else a + b


def _on_cpu() -> bool:
  """Whether the computation being traced runs on XLA:CPU (the one mesh's backend)."""
  return jax.default_backend() == 'cpu'


def materialize(x: jax.Array) -> jax.Array:
  """x itself; on XLA:CPU written to a buffer of its own, and so is its cotangent.

  XLA drops `optimization_barrier` before fusion, so the barrier here is a conditional,
  which its fusion pass does not cross; its simplifier would turn a conditional of two
  trivial branches into a select, so one branch holds the (otherwise removed) barrier.
  Both branches are the identity, so the predicate's value does not matter. JAX
  differentiates `cond` branch-wise: the JVP and the transpose are conditionals of the
  same form, so tangents and cotangents are materialised too. Not on GPU/TPU, where a
  conditional costs a host round-trip for its predicate and fusion is their strength.
  """
  if not _on_cpu():
    return x
  return lax.cond(x.reshape(-1)[0] > 0, lambda y: y, lax.optimization_barrier, x)


def dense(x: jax.Array, w: jax.Array) -> jax.Array:
  """x [..., C_in] @ w [C_in, C_out] (the NIN's matmul)."""
  return _dense(x, w) if _on_cpu() else jnp.tensordot(x, w, axes=1)


@jax.custom_jvp
def _dense(x: jax.Array, w: jax.Array) -> jax.Array:
  return jnp.tensordot(x, w, axes=1)


@functools.partial(_dense.defjvp, symbolic_zeros=True)
def _dense_jvp(primals, tangents):
  x, w = primals
  x_dot, w_dot = tangents
  y = _dense(x, w)
  y_dot = None
  if not isinstance(x_dot, SymbolicZero):
    y_dot = jnp.tensordot(x_dot, w, axes=1)
  if not isinstance(w_dot, SymbolicZero):
    y_dot = _add(y_dot, _flat_weight_tangent(x, w_dot))
  return y, jnp.zeros_like(y) if y_dot is None else y_dot


@functools.partial(jax.custom_jvp, nondiff_argnums=(2, 3))
def _conv(x: jax.Array, w: jax.Array, strides: tuple, padding) -> jax.Array:
  return lax.conv_general_dilated(x, w, strides, padding, dimension_numbers=_NHWC)


@functools.partial(_conv.defjvp, symbolic_zeros=True)
def _conv_jvp(strides, padding, primals, tangents):
  x, w = primals
  x_dot, w_dot = tangents
  y = _conv(x, w, strides, padding)
  y_dot = None
  if not isinstance(x_dot, SymbolicZero):
    y_dot = lax.conv_general_dilated(x_dot, w, strides, padding, dimension_numbers=_NHWC)
  if not isinstance(w_dot, SymbolicZero):
    pointwise = (w.shape[:2] == (1, 1) and strides == (1, 1)
                 and padding in ('SAME', 'VALID', ((0, 0), (0, 0))))
    if pointwise:
      w_dot_term = _flat_weight_tangent(x, w_dot.reshape(w.shape[2:]))
    else:
      x_t = jnp.transpose(x, (3, 1, 2, 0))                          # [C_in, H, W, N]
      w_dot_term = lax.conv_general_dilated(x_t, w_dot, strides, padding,
                                            dimension_numbers=('CHWN', 'HWIO', 'NHWC'))
    y_dot = _add(y_dot, w_dot_term)
  return y, jnp.zeros_like(y) if y_dot is None else y_dot


def conv_general_dilated(lhs: jax.Array, rhs: jax.Array, window_strides, padding,
                         lhs_dilation=None, rhs_dilation=None, dimension_numbers=None,
                         feature_group_count: int = 1, precision=None, **kwargs) -> jax.Array:
  """`lax.conv_general_dilated` with the weight gradient above; a drop-in for flax's
  `nn.Conv(conv_general_dilated=...)`.

  Handles 2-D NHWC x HWIO convolutions without dilation or groups, the ones the score
  networks use, on XLA:CPU; anything else is passed to lax.conv_general_dilated unchanged.
  """
  plain = functools.partial(
      lax.conv_general_dilated, lhs, rhs, window_strides, padding, lhs_dilation=lhs_dilation,
      rhs_dilation=rhs_dilation, dimension_numbers=dimension_numbers,
      feature_group_count=feature_group_count, precision=precision, **kwargs)
  if (not _on_cpu() or lhs.ndim != 4 or feature_group_count != 1
      or kwargs.get('batch_group_count', 1) != 1 or precision is not None
      or kwargs.get('preferred_element_type') is not None
      or any(d is not None and tuple(d) != (1, 1) for d in (lhs_dilation, rhs_dilation))
      or lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers)
      != lax.conv_dimension_numbers(lhs.shape, rhs.shape, _NHWC)):
    return plain()
  if not isinstance(padding, str):
    padding = tuple(tuple(int(p) for p in pair) for pair in padding)
  return _conv(lhs, rhs, tuple(int(s) for s in window_strides), padding)


@contextlib.contextmanager
def plain_lax_ops(which=('dense', 'conv_general_dilated', 'materialize')):
  """Within this block, the functions named in `which` are the plain lax ops.

  For A/B comparisons (benchmarks/weight_grad.py, tests): the models look these up
  when they are traced, so a function traced inside the block uses plain
  `jnp.tensordot` / `lax.conv_general_dilated` and autodiff's usual weight gradients,
  and `materialize` is the identity.
  """
  plain = {'dense': lambda x, w: jnp.tensordot(x, w, axes=1),
           'conv_general_dilated': lax.conv_general_dilated,
           'materialize': lambda x: x}
  module = globals()
  saved = {name: module[name] for name in which}
  module.update({name: plain[name] for name in which})
  try:
    yield
  finally:
    module.update(saved)
