"""Linear: y = act(x @ w.T + b) with w of shape (out_features, in_features)."""

from __future__ import annotations

from ..argcheck import accumulate_flags, activation_output as check_activation_output, fused_activation, operands, \
    out_pair
from ..backend import op
from ..plan import planned

ACTIVATIONS = (None, "relu", "leaky_relu", "sigmoid", "tanh")


def _dim(a, name: str, axis: int, want: int, what: str) -> None:
    """ValueError unless a.shape[axis] == want; ``what`` says what that dimension must match."""
    if a.shape[axis] != want:
        raise ValueError(f"{name}: got shape {tuple(a.shape)}, expected {want} {what}")


@planned
def linear_forward(x, w, b=None, *, activation=None, negative_slope=0.01, kernels=None):
    """y[N, out] = act(x[N, in] @ w[out, in].T + b[out]); ``activation`` (one of ACTIVATIONS) is
    applied in the GEMM's epilogue on the GPU, ``negative_slope`` is leaky_relu's."""
    operands("w", (x, "x", 2), (w, "w", 2), (b, "b", 1))
    activation, slope = fused_activation(activation, negative_slope, ACTIVATIONS)
    _dim(x, "x", 1, w.shape[1], f"features (dim 1) to match w of shape {tuple(w.shape)}")
    if b is not None and b.shape[0] != w.shape[0]:
        raise ValueError(f"b: got shape {tuple(b.shape)}, expected ({w.shape[0]},)")
    return op("linear_forward", x, w, b, kernels=kernels)(x, w, b, activation, slope)


@planned
def linear_backward_data(dy, w, *, activation=None, negative_slope=0.01, activation_output=None, kernels=None):
    """dx[N, in] = dy[N, out] @ w[out, in]. With ``activation_output`` (x itself, when x was the output
    of ``activation``, one of ACTIVATIONS) the gradient w.r.t. that activation's input instead: dx
    through the activation's backward, in the GEMM's epilogue on the GPU."""
    operands("w", (dy, "dy", 2), (w, "w", 2))
    _dim(dy, "dy", 1, w.shape[0], "columns")
    activation, slope = fused_activation(activation, negative_slope, ACTIVATIONS)
    check_activation_output(activation_output, activation, (dy.shape[0], w.shape[1]), dy, "dy")
    return op("linear_backward_data", dy, w, kernels=kernels)(dy, w, activation, slope, activation_output)


@planned
def linear_backward_weight(dy, x, *, out=None, accumulate=False, kernels=None):
    """Returns (dw[out, in] = dy[N, out].T @ x[N, in], db[out] = dy summed over N). ``out``: None, or
    a pair (dw, db) whose arrays (each may be None: allocated) the gradients are written into
    (C-contiguous, of dy's dtype and device) and returned; ``accumulate`` (a bool, or a pair for dw
    and db): added into them instead."""
    operands("dy", (dy, "dy", 2), (x, "x", 2))
    _dim(dy, "dy", 0, x.shape[0], "rows (the batch of x)")
    out = out_pair(out, "out", ((dy.shape[1], x.shape[1]), (dy.shape[1],)), dy, "dy", "(dw, db)")
    return op("linear_backward_weight", dy, x, kernels=kernels)(dy, x, out=out,
                                                               accumulate=accumulate_flags(accumulate, out))


@planned
def linear_backward(dy, x, w, *, input_grad=True, weight_grad=True, out=None, accumulate=False, activation=None,
                    negative_slope=0.01, activation_output=None, kernels=None):
    """(dx, dw, db) of y = x @ w.T + b in one call: linear_backward_data (with its ``activation``,
    ``negative_slope`` and ``activation_output``) unless input_grad is False, linear_backward_weight
    (into ``out``, added with ``accumulate``) unless weight_grad is False; None for a pass not run.
    The CUDA C family runs both passes of at most 16 outputs (a classifier's or a discriminator's
    head) as one launch."""
    operands("dy", (dy, "dy", 2), (x, "x", 2), (w, "w", 2))
    _dim(dy, "dy", 0, x.shape[0], "rows (the batch of x)")
    _dim(dy, "dy", 1, w.shape[0], f"columns to match w of shape {tuple(w.shape)}")
    _dim(x, "x", 1, w.shape[1], f"features (dim 1) to match w of shape {tuple(w.shape)}")
    activation, slope = fused_activation(activation, negative_slope, ACTIVATIONS)
    check_activation_output(activation_output, activation, x.shape, dy, "dy")
    out = out_pair(out, "out", ((dy.shape[1], x.shape[1]), (dy.shape[1],)), dy, "dy", "(dw, db)")
    return op("linear_backward", dy, x, w, kernels=kernels)(dy, x, w, bool(input_grad), bool(weight_grad), out,
                                                           accumulate_flags(accumulate, out), activation, slope,
                                                           activation_output)
