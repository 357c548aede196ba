"""Layers: each forward keeps what its backward needs; backward accumulates into .grad (the first
gradient of a step written straight into the parameter's grad_buffer: Parameter.grad_out)."""

from __future__ import annotations

import numpy as np

from .. import ops, settings
from ..argcheck import leaky_slope, pair, pool_hyper
from . import init
from .module import Module


# the (name, negative slope) a layer's forward takes when no activation is fused into it
NO_ACTIVATION = (None, 0.01)


def _rng(rng):
    return rng if rng is not None else np.random.default_rng()


def _positive_int(v, name):
    if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
        raise ValueError(f"{name}: got {v!r}, expected a positive int")
    return int(v)


class _ConvBase(Module):
    """Shared by Conv2d and ConvTranspose2d: hyper-parameter checks, weight and bias, and the passes, which
    call the subclass's conv ops (forward, and backward: both passes in one op) with its hyper-parameters."""

    takes_activation = True  # forward(x, activation): the activation after it in a Sequential, fused

    def __init__(self, in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias, rng, dtype,
                 transposed, precision):
        super().__init__()
        self.precision = settings.check_precision(precision)  # None: the tf32 setting decides
        self.in_channels = _positive_int(in_channels, "in_channels")
        self.out_channels = _positive_int(out_channels, "out_channels")
        self.kernel_size = pair(kernel_size, "kernel_size", 1)
        self.stride = pair(stride, "stride", 1)
        self.padding = pair(padding, "padding", 0)
        self.dilation = pair(dilation, "dilation", 1)
        self.groups = g = _positive_int(groups, "groups")
        if self.in_channels % g or self.out_channels % g:
            raise ValueError(f"groups: got {g}, expected a divisor of in_channels={self.in_channels} and "
                             f"out_channels={self.out_channels}")
        # Conv2d: K x C/G x R x S; ConvTranspose2d: C_in x C_out/G x R x S (PyTorch's layouts)
        w_shape = ((self.in_channels, self.out_channels // g) if transposed else
                   (self.out_channels, self.in_channels // g)) + self.kernel_size
        self.weight = self.add_parameter("weight", init.he_normal_(np.empty(w_shape, dtype), _rng(rng)))
        self.bias = self.add_parameter("bias", np.zeros(self.out_channels, dtype)) if bias else None
        self._x = None

    def _clear_cache(self):
        self._x = None

    def _kw(self):
        """The family and precision arguments of this layer's conv ops."""
        return {"kernels": self.kernels, "precision": self.precision}

    def _hyper(self):
        return self.stride, self.padding, self.dilation, self.groups

    def forward(self, x, activation=NO_ACTIVATION):
        """y = conv(x) + bias, through a fused ``activation`` (name, negative slope) when given."""
        self._x = x
        b = self.bias.data if self.bias is not None else None
        name, slope = activation
        kw = self._kw() if name is None else dict(self._kw(), activation=name, negative_slope=slope)
        return self._forward_op(x, self.weight.data, b, *self._hyper(), **kw)

    def backward(self, dy, input_grad=True, input_activation=None):
        """``input_activation`` (name, negative slope), Conv2d only (takes_input_activation): x is
        that activation's output, and dx the gradient w.r.t. its input (in the backward-data pass)."""
        if input_activation is not None and not self.takes_input_activation:
            raise ValueError(f"input_activation: got {input_activation!r}, expected None ({type(self).__name__} "
                             "takes none)")
        x, w = self._saved(self._x, "input"), self.weight
        out, add = w.grad_out() if w.requires_grad else (None, False)
        kw = self._kw() if input_activation is None else dict(self._kw(), input_activation=input_activation[0],
                                                              input_negative_slope=input_activation[1])
        dx, dw = self._backward_op(dy, x, w.data, *self._hyper(), input_grad=input_grad, weight_grad=w.requires_grad,
                                   out=out, accumulate=add, **kw)
        if w.requires_grad:
            w.accumulate(dw)
        if self.bias is not None and self.bias.requires_grad:
            out, add = self.bias.grad_out()
            self.bias.accumulate(ops.conv2d_backward_bias(dy, out=out, accumulate=add, kernels=self.kernels))
        return dx

    def extra_repr(self):
        hyper = ", ".join(f"{name}={getattr(self, name)}" for name in self._repr_names)
        return f"{self.in_channels}, {self.out_channels}, {hyper}, bias={self.bias is not None}"


class Conv2d(_ConvBase):
    """y = conv2d(x, weight) + bias; weight K x C/groups x R x S. precision: None (the tf32 setting),
    "fp32" or "tf32" (TF32 tensor cores for this layer's conv passes on the GPU)."""

    _forward_op = staticmethod(ops.conv2d_forward)
    _backward_op = staticmethod(ops.conv2d_backward)
    _repr_names = ("kernel_size", "stride", "padding", "dilation", "groups")
    takes_input_activation = True

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1,
                 bias=True, rng=None, dtype=np.float32, precision=None):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias, rng, dtype,
                         transposed=False, precision=precision)


class ConvTranspose2d(_ConvBase):
    """Transposed convolution; weight C_in x C_out/groups x R x S (PyTorch's layout).

    Its passes are conv2d's with roles swapped: forward is conv2d backward-data, backward-data is
    conv2d forward, and the weight gradient is conv2d backward-weight with x and dy exchanged.
    """

    _forward_op = staticmethod(ops.conv_transpose2d_forward)
    _backward_op = staticmethod(ops.conv_transpose2d_backward)
    _repr_names = ("kernel_size", "stride", "padding", "output_padding", "dilation", "groups")

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, output_padding=0, dilation=1,
                 groups=1, bias=True, rng=None, dtype=np.float32, precision=None):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias, rng, dtype,
                         transposed=True, precision=precision)
        self.output_padding = pair(output_padding, "output_padding", 0)

    def _hyper(self):
        return self.stride, self.padding, self.output_padding, self.dilation, self.groups


class Linear(Module):
    """y = x @ weight.T + bias; weight out_features x in_features."""

    takes_activation = True  # forward(x, activation): the activation after it in a Sequential, fused
    takes_input_activation = True

    def __init__(self, in_features, out_features, bias=True, rng=None, dtype=np.float32):
        super().__init__()
        self.in_features = _positive_int(in_features, "in_features")
        self.out_features = _positive_int(out_features, "out_features")
        self.weight = self.add_parameter(
            "weight", init.he_normal_(np.empty((self.out_features, self.in_features), dtype), _rng(rng)))
        self.bias = self.add_parameter("bias", np.zeros(self.out_features, dtype)) if bias else None
        self._x = None

    def _clear_cache(self):
        self._x = None

    def forward(self, x, activation=NO_ACTIVATION):
        """y = x @ weight.T + bias, through a fused ``activation`` (name, negative slope) when given."""
        self._x = x
        b = self.bias.data if self.bias is not None else None
        name, slope = activation
        return ops.linear_forward(x, self.weight.data, b, activation=name, negative_slope=slope, kernels=self.kernels)

    def backward(self, dy, input_grad=True, input_activation=None):
        """Both passes in one op (ops.linear_backward). ``input_activation`` (name, negative slope): x is
        that activation's output, and dx the gradient w.r.t. its input (in the backward-data epilogue)."""
        x = self._saved(self._x, "input")
        bias = self.bias if self.bias is not None and self.bias.requires_grad else None
        weight_grad = self.weight.requires_grad or bias is not None   # one pass computes both
        (w_out, w_add), (b_out, b_add) = (p.grad_out() if p is not None and p.requires_grad and weight_grad
                                          else (None, False) for p in (self.weight, bias))
        name, slope = input_activation or NO_ACTIVATION
        dx, dw, db = ops.linear_backward(dy, x, self.weight.data, input_grad=input_grad, weight_grad=weight_grad,
                                         out=(w_out, b_out), accumulate=(w_add, b_add), activation=name,
                                         negative_slope=slope, activation_output=None if name is None else x,
                                         kernels=self.kernels)
        if self.weight.requires_grad:
            self.weight.accumulate(dw)
        if bias is not None:
            bias.accumulate(db)
        return dx

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class _Activation(Module):
    """Elementwise activation whose backward needs only its output y (and the op's extra
    arguments, :meth:`_args`, after x in the forward and after y in the backward).

    In a Sequential, one with a ``_name`` right after a layer that ``takes_activation`` (Conv2d,
    ConvTranspose2d, Linear, BatchNorm) runs as that layer's fused activation: no pass of its own forward, and none
    backward either after a layer whose backward recomputes it (``backward_takes_activation``:
    BatchNorm)."""

    _fwd = _bwd = None
    _name = None  # the fused-activation name of the ops (argcheck.FUSED_ACTIVATIONS), None: never fused

    def __init__(self):
        super().__init__()
        self._y = None

    def _clear_cache(self):
        self._y = None

    def _args(self) -> tuple:
        return ()

    def forward(self, x):
        self._y = type(self)._fwd(x, *self._args(), kernels=self.kernels)
        return self._y

    def backward(self, dy, input_grad=True):
        if not input_grad:
            return None
        return type(self)._bwd(dy, self._saved(self._y, "output"), *self._args(), kernels=self.kernels)

    def _spec(self):
        """(name, negative slope) of this activation fused into another op."""
        return (self._name,) + (self._args() or (0.0,))   # LeakyReLU's args are its slope

    def output_activation(self):
        return self._spec() if self._name is not None else None

    def fuses_after(self, prev) -> bool:
        return self._name is not None and getattr(prev, "takes_activation", False)

    def forward_fused(self, prev, x):
        """prev's forward with this activation in its pass."""
        self._y = prev.forward(x, activation=self._spec())
        return self._y

    def backward_fused(self, prev, dy, input_grad=True, **kw):
        """The gradient with respect to prev's input (``kw``: prev's input_activation)."""
        if getattr(prev, "backward_takes_activation", False):
            return prev.backward(dy, input_grad, activation=self._spec(), **kw)
        return prev.backward(self.backward(dy), input_grad, **kw)


class ReLU(_Activation):
    _fwd, _bwd, _name = ops.relu_forward, ops.relu_backward, "relu"


class Tanh(_Activation):
    _fwd, _bwd, _name = ops.tanh_forward, ops.tanh_backward, "tanh"


class Sigmoid(_Activation):
    _fwd, _bwd = ops.sigmoid_forward, ops.sigmoid_backward


class LeakyReLU(_Activation):
    _fwd, _bwd, _name = ops.leaky_relu_forward, ops.leaky_relu_backward, "leaky_relu"

    def __init__(self, negative_slope=0.01):
        super().__init__()
        self.negative_slope = leaky_slope(negative_slope)

    def _args(self) -> tuple:
        return (self.negative_slope,)

    def extra_repr(self):
        return f"negative_slope={self.negative_slope}"


class _Pool(Module):
    def __init__(self, kernel_size, stride, padding):
        super().__init__()
        self.kernel_size, self.stride, self.padding = pool_hyper(kernel_size, stride, padding)
        self._x_shape = None

    def _hyper(self):
        return self.kernel_size, self.stride, self.padding

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class MaxPool2d(_Pool):
    """Max pooling; in a Sequential, ReLU then MaxPool2d run as one relu_max_pool2d op."""

    def __init__(self, kernel_size, stride=None, padding=0):
        super().__init__(kernel_size, stride, padding)
        self._argmax = None
        self._fused_argmax = None

    def _clear_cache(self):
        self._argmax = self._fused_argmax = None

    def fuses_after(self, prev) -> bool:
        return type(prev) is ReLU

    def forward_fused(self, prev, x):
        """This layer applied to relu(x) (the ReLU before it folded in): one pass over x."""
        y, self._fused_argmax = self._forward(ops.relu_max_pool2d_forward, x)
        return y

    def backward_fused(self, prev, dy, input_grad=True):
        """The gradient with respect to the input of the folded-in ReLU."""
        return self._backward(ops.relu_max_pool2d_backward, dy, self._fused_argmax, "fused argmax", input_grad)

    def forward(self, x):
        y, self._argmax = self._forward(ops.max_pool2d_forward, x)
        return y

    def backward(self, dy, input_grad=True):
        return self._backward(ops.max_pool2d_backward, dy, self._argmax, "argmax", input_grad)

    def _forward(self, op, x):
        """op's (y, argmax) of x (plain or ReLU-fused max pooling); keeps x's shape for the backward pass."""
        y, argmax = op(x, *self._hyper(), kernels=self.kernels)
        self._x_shape = x.shape
        return y, argmax

    def _backward(self, op, dy, argmax, what, input_grad):
        if not input_grad:
            return None
        return op(dy, self._saved(argmax, what), self._x_shape, *self._hyper(), kernels=self.kernels)


class AvgPool2d(_Pool):
    def __init__(self, kernel_size, stride=None, padding=0, count_include_pad=True):
        super().__init__(kernel_size, stride, padding)
        self.count_include_pad = bool(count_include_pad)

    def _hyper(self):
        return super()._hyper() + (self.count_include_pad,)

    def forward(self, x):
        self._x_shape = x.shape
        return ops.avg_pool2d_forward(x, *self._hyper(), kernels=self.kernels)

    def backward(self, dy, input_grad=True):
        if not input_grad:
            return None
        return ops.avg_pool2d_backward(dy, self._saved(self._x_shape, "input shape"), *self._hyper(),
                                       kernels=self.kernels)

    def extra_repr(self):
        return super().extra_repr() + f", count_include_pad={self.count_include_pad}"


class Flatten(Module):
    """(N, ...) -> (N, prod(...))."""

    reshapes = True   # a Sequential looks through it for an activation's backward (input_activation)

    def __init__(self):
        super().__init__()
        self._shape = None

    def forward(self, x):
        self._shape = x.shape
        return x.reshape(x.shape[0], -1)

    def backward(self, dy, input_grad=True):
        return dy.reshape(self._saved(self._shape, "input shape")) if input_grad else None


class Unflatten(Module):
    """(N, prod(shape)) -> (N, *shape)."""

    reshapes = True

    def __init__(self, shape):
        super().__init__()
        self.shape = tuple(_positive_int(s, "shape") for s in shape)

    def forward(self, x):
        if x.ndim != 2 or x.shape[1] != int(np.prod(self.shape)):
            raise ValueError(f"x: got shape {tuple(x.shape)}, expected (N, {int(np.prod(self.shape))}) to unflatten "
                             f"into {self.shape}")
        return x.reshape((x.shape[0],) + self.shape)

    def backward(self, dy, input_grad=True):
        return dy.reshape(dy.shape[0], -1) if input_grad else None

    def extra_repr(self):
        return f"shape={self.shape}"
