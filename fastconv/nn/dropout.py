"""Dropout: a counter-based hash mask (the dropout op family), its call counter on the device on
a GPU so that a CUDA graph of the step draws a new mask every replay."""

from __future__ import annotations

import numpy as np

from .. import ops
from ..argcheck import probability
from ..backend import is_cupy_array, to_device
from .module import Module


class Dropout(Module):
    """Zeroes each element with probability p in training and scales the rest by 1/(1-p).

    Masks come from a counter-based hash of (seed, call number, element index), identical on the
    CPU and the GPU; the call number is the int64 buffer ``calls``, so a resumed run draws the
    same masks. On the GPU it lives in a uint32 device counter that the forward kernel advances
    (a CUDA graph of the training step draws a new mask at every replay), made from the buffer
    at the first forward and read back into it by state_dict and .to().

    It takes the backward of an activation before it into its own (``takes_input_activation``: a
    Linear -> ReLU -> Dropout -> Linear stack runs the ReLU's backward in the dropout's pass).
    """

    takes_input_activation = True

    def __init__(self, p=0.5, seed=0):
        super().__init__()
        self.p = probability(p)
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
            raise TypeError(f"seed: got {seed!r}, expected an int")
        self.add_buffer("seed", np.asarray(int(seed) & 0xFFFFFFFF, np.int64))
        self.add_buffer("calls", np.zeros((), np.int64))
        self._mask = self._x = None
        self._counter = None   # on the GPU: uint32 (calls mod 2**32, 0)

    def _clear_cache(self):
        self._mask = self._x = None
        self._counter = None   # read back first (Module._map_arrays)

    def _read_back(self):
        if self._counter is not None:
            calls = int(self.buffer("calls"))
            low = int(to_device(self._counter[:1], "cpu")[0])
            self.buffer("calls")[...] = calls + ((low - calls) & 0xFFFFFFFF)

    def _buffers_loaded(self):
        self._counter = None

    def forward(self, x):
        self._x = x   # the outputs of an activation before it, for backward's input_activation
        if not self.training or self.p == 0.0:
            self._mask = None
            return x
        seed = int(self.buffer("seed")) * 0x9E3779B1
        if not is_cupy_array(x):
            calls = int(self.buffer("calls"))
            self.buffer("calls")[...] = calls + 1
            y, self._mask = ops.dropout_forward(x, self.p, (seed + calls) & 0xFFFFFFFF, kernels=self.kernels)
            return y
        if self._counter is None:
            self._counter = to_device(np.array([int(self.buffer("calls")) & 0xFFFFFFFF, 0], np.uint32), "cuda")
        y, self._mask = ops.dropout_forward(x, self.p, seed & 0xFFFFFFFF, self._counter, kernels=self.kernels)
        return y

    def backward(self, dy, input_grad=True, input_activation=None):
        """``input_activation`` (name, negative slope): x is that activation's output, and dx the
        gradient w.r.t. its input (in dropout's backward kernel; with no mask, the activation's own)."""
        if not input_grad:
            return None
        if input_activation is None:
            return dy if self._mask is None else ops.dropout_backward(dy, self._mask, self.p, kernels=self.kernels)
        name, slope = input_activation
        x = self._saved(self._x, "input")
        if self._mask is None:   # eval, or p = 0: the identity, then the activation's backward
            extra = (slope,) if name == "leaky_relu" else ()
            return getattr(ops, f"{name}_backward")(dy, x, *extra, kernels=self.kernels)
        return ops.dropout_backward(dy, self._mask, self.p, activation=name, negative_slope=slope, activation_output=x,
                                    kernels=self.kernels)

    def extra_repr(self):
        return f"p={self.p}"
