"""Module, Parameter and Sequential: explicit forward/backward with accumulating gradients."""

from __future__ import annotations

from .. import ops
from ..backend import array_module, device_of, to_device


class Parameter:
    """A trainable array and its gradient (None until a backward pass accumulates into it).

    ``grad_buffer``: where the gradient goes, when an optimizer holds the parameters in flat
    buffers (fastconv.optim): a persistent view into its flat gradient buffer, which the first
    gradient of a step is written into (zero_grad only sets ``grad`` to None), so the optimizer's
    one update reads every gradient from one buffer and a CUDA graph keeps its addresses. A layer
    passes :meth:`grad_out` as its gradient op's ``out`` and ``accumulate``, so that first gradient
    is written there by the op itself, not copied, and a second one of the same step (a
    discriminator's fake batch after its real one) is added into ``grad`` by the op's own kernel,
    not by a separate add. ``make_buffers``: a weak reference to the optimizer's method that
    makes its flat buffers (set by the optimizer), so that they exist before the first gradient of
    the first step (a step captured as a CUDA graph allocates the same arrays on every pass).
    ``requires_grad`` False (Module.requires_grad_): backward passes compute no gradient for it
    (not even the op) and leave ``grad`` as it is.
    """

    __slots__ = ("data", "grad", "grad_buffer", "make_buffers", "requires_grad")

    def __init__(self, data):
        self.data = data
        self.grad = None
        self.grad_buffer = None
        self.make_buffers = None
        self.requires_grad = True

    def grad_out(self):
        """(out, accumulate) of the next gradient op: the gradient and True once this step has one
        (the op adds into it), else the grad_buffer (made now if an optimizer holds this parameter
        and has no current flat buffers: the first step, or the first after .to()) and False; the
        grad_buffer is None without an optimizer's buffers (the op allocates)."""
        if self.grad is not None:
            return self.grad, True
        if self.grad_buffer is None and self.make_buffers is not None:
            make = self.make_buffers()
            if make is not None:
                make()
        return self.grad_buffer, False

    def accumulate(self, g):
        """Take the gradient op's result g: nothing to do when the op added it into the gradient
        (g is ``grad``, :meth:`grad_out`) or wrote it into the grad_buffer (g is the buffer: it
        becomes ``grad``); otherwise g is added to the gradient, or becomes it, or a copy puts it
        into the grad_buffer (a kernel on the GPU: a captured step may hold no CuPy arithmetic)."""
        if g is self.grad:
            return
        if self.grad is not None:
            ops.accumulate(self.grad, g)
        elif g is self.grad_buffer or self.grad_buffer is None:
            self.grad = g
        else:
            ops.accumulate(self.grad_buffer, g, add=False)
            self.grad = self.grad_buffer

    def __repr__(self):
        return f"Parameter(shape={tuple(self.data.shape)}, dtype={self.data.dtype}, device={device_of(self.data)})"


class Module:
    """Base layer. ``forward(x)`` keeps what ``backward`` needs; ``backward(dy)`` accumulates into
    each parameter's ``.grad`` and returns the gradient w.r.t. the input (None when
    ``input_grad=False``).

    An activation's backward can run inside the backward of the module after it: one whose
    ``takes_input_activation`` is True (Conv2d, Linear, a Sequential starting with one) takes
    ``backward(dy, input_grad, input_activation=(name, negative slope))`` and then returns the
    gradient w.r.t. the input of that activation, whose output was its input x (the kernel's
    epilogue applies the activation's backward at x: no pass of its own). The module before it
    reports that activation by ``output_activation()`` and skips its backward when told so (a
    Sequential's ``skip_output_activation``)."""

    takes_input_activation = False

    def __init__(self):
        self._params: dict[str, Parameter] = {}
        self._buffers: dict[str, object] = {}
        self._children: dict[str, Module] = {}
        self.training = True
        self.kernels: str | None = None

    # ---- registration ----
    def add_parameter(self, name: str, data) -> Parameter:
        p = Parameter(data)
        self._params[name] = p
        return p

    def add_buffer(self, name: str, data):
        self._buffers[name] = data

    def buffer(self, name: str):
        return self._buffers[name]

    def add_module(self, name: str, module: "Module") -> "Module":
        if not isinstance(module, Module):
            raise TypeError(f"module {name!r}: got {type(module).__name__}, expected a fastconv.nn.Module")
        self._children[name] = module
        return module

    # ---- traversal ----
    def named_modules(self, prefix=""):
        yield prefix, self
        for name, child in self._children.items():
            yield from child.named_modules(f"{prefix}{name}.")

    def named_parameters(self):
        return [(f"{pre}{name}", p) for pre, m in self.named_modules() for name, p in m._params.items()]

    def parameters(self):
        return [p for _, p in self.named_parameters()]

    def named_buffers(self):
        return [(f"{pre}{name}", b) for pre, m in self.named_modules() for name, b in m._buffers.items()]

    # ---- state ----
    def state_dict(self) -> dict:
        """{name: array} of parameters and buffers, on their current device (no copies); buffers
        a layer keeps on the device are read back into them first (Dropout's call counter)."""
        for _, m in self.named_modules():
            m._read_back()
        d = {name: p.data for name, p in self.named_parameters()}
        d.update(self.named_buffers())
        return d

    def load_state_dict(self, state: dict, strict: bool = True):
        """Copy arrays (numpy or cupy) into the parameters and buffers, keeping their device and dtype.

        Atomic: every name, shape and dtype (real numbers into floating arrays; integers, or
        floats of integral value, into integer buffers) is checked, and every array converted,
        before the first one is written, so an error leaves the module as it was.
        """
        own = self.state_dict()
        if strict:
            missing = sorted(set(own) - set(state))
            unexpected = sorted(set(state) - set(own))
            if missing or unexpected:
                raise KeyError(f"state: missing keys {missing}, unexpected keys {unexpected}; expected exactly "
                               f"{sorted(own)}")
        staged = []
        for name, target in own.items():
            if name not in state:
                continue
            value = state[name]
            if not hasattr(value, "shape") or not hasattr(value, "dtype"):
                raise TypeError(f"state[{name!r}]: got {type(value).__name__}, expected a numpy or cupy array")
            if tuple(value.shape) != tuple(target.shape):
                raise ValueError(f"state[{name!r}]: got shape {tuple(value.shape)}, expected {tuple(target.shape)}")
            value = to_device(value, device_of(target))
            if value.dtype.kind not in "fiu" or (target.dtype.kind in "iu" and value.dtype.kind == "f" and not bool(
                    (value == array_module(value).round(value)).all())):
                raise TypeError(f"state[{name!r}]: got {value.dtype} values, expected values that fit "
                                f"{target.dtype}")
            staged.append((target, value.astype(target.dtype, copy=False)))
        for target, value in staged:
            target[...] = value
        for _, m in self.named_modules():
            m._buffers_loaded()
        return self

    # ---- modes and devices ----
    def train(self, mode: bool = True):
        for _, m in self.named_modules():
            m.training = mode
        return self

    def eval(self):
        return self.train(False)

    def zero_grad(self):
        for p in self.parameters():
            p.grad = None

    def requires_grad_(self, requires_grad: bool = True):
        """Whether backward computes this module's parameter gradients (PyTorch's requires_grad_):
        False skips their ops (a GAN's generator step through the discriminator needs only its
        input gradient); input gradients are computed either way. Returns self."""
        if not isinstance(requires_grad, bool):
            raise ValueError(f"requires_grad: got {requires_grad!r}, expected True or False")
        for p in self.parameters():
            p.requires_grad = bool(requires_grad)
        return self

    def _map_arrays(self, fn):
        for _, m in self.named_modules():
            m._read_back()
            for p in m._params.values():
                data = fn(p.data)
                if data is not p.data:  # a new array: the optimizer makes its flat buffers again
                    p.data, p.grad_buffer = data, None
                if p.grad is not None:
                    p.grad = fn(p.grad)
            for name, b in m._buffers.items():
                if b.dtype.kind == "f":  # integer buffers stay on the host (Dropout's seed and calls)
                    m._buffers[name] = fn(b)
            m._clear_cache()

    def to(self, device: str, kernels: str | None = None):
        """Move parameters and buffers to "cpu" or "cuda"; ``kernels`` picks the GPU kernel family."""
        if kernels is not None:
            from ..backend import kernel_family
            kernel_family(kernels)  # validates
        self._map_arrays(lambda a: to_device(a, device))
        for _, m in self.named_modules():
            m.kernels = kernels
        return self

    def astype(self, dtype):
        """Cast floating parameters and buffers (e.g. to float64 for gradient checks)."""
        self._map_arrays(lambda a: a.astype(dtype) if a.dtype.kind == "f" else a)
        return self

    @property
    def device(self) -> str:
        for _, a in [*self.named_parameters(), *self.named_buffers()]:
            return device_of(a.data if isinstance(a, Parameter) else a)
        return "cpu"

    def _clear_cache(self):
        """Drop arrays kept from the last forward (they are on the old device after .to())."""

    def _read_back(self):
        """Copy state a layer keeps on the device into its host buffers (before state_dict, .to())."""

    def _buffers_loaded(self):
        """The buffers were overwritten by load_state_dict: drop device copies made from them."""

    def _saved(self, value, what: str):
        """A value kept by forward for backward; backward before any forward is a clear error."""
        if value is None:
            raise RuntimeError(f"{type(self).__name__}.backward: got no saved {what}, expected forward(x) to run "
                               "first (after .to() too, which drops what forward kept)")
        return value

    # ---- passes ----
    def forward(self, x):
        raise TypeError(f"{type(self).__name__} defines no forward pass")

    def backward(self, dy, input_grad: bool = True):
        raise TypeError(f"{type(self).__name__} defines no backward pass")

    def __call__(self, x):
        return self.forward(x)

    def output_activation(self):
        """(name, negative slope) of the activation this module's output comes out of, when its
        backward is a pass that a later module can take over (input_activation), else None."""
        return None

    # ---- fusion in a Sequential: layer `prev` then this one as one pass ----
    def fuses_after(self, prev) -> bool:
        """Whether this layer runs fused with ``prev``, the layer before it in a Sequential (then
        ``forward_fused(prev, x)`` and ``backward_fused(prev, dy, input_grad)`` run both)."""
        return False

    def extra_repr(self) -> str:
        return ""

    def __repr__(self):
        if not self._children:
            return f"{type(self).__name__}({self.extra_repr()})"
        lines = [f"{type(self).__name__}("]
        for name, child in self._children.items():
            body = repr(child).replace("\n", "\n  ")
            lines.append(f"  ({name}): {body}")
        lines.append(")")
        return "\n".join(lines)


class Sequential(Module):
    """Layers applied in order; backward runs them in reverse and returns the input gradient."""

    def __init__(self, *layers: Module):
        super().__init__()
        for i, layer in enumerate(layers):
            self.add_module(str(i), layer)

    @property
    def layers(self):
        return list(self._children.values())

    def __len__(self):
        return len(self._children)

    def __getitem__(self, i):
        return self.layers[i]

    def _fuses(self, layers, i) -> bool:
        """Whether layers i and i+1 run as one fused pass: layer i+1 fuses after layer i
        (Module.fuses_after: MaxPool2d after ReLU as one relu_max_pool2d op; ReLU, LeakyReLU and Tanh
        after Conv2d, ConvTranspose2d, Linear and BatchNorm as those ops' fused activation) and both use
        the same kernel family."""
        nxt = layers[i + 1] if 0 <= i < len(layers) - 1 else None
        return nxt is not None and nxt.kernels == layers[i].kernels and nxt.fuses_after(layers[i])

    def forward(self, x):
        layers, i = self.layers, 0
        self._fused = set()  # indices of the layers that ran fused with the layer before them
        while i < len(layers):
            # a layer both pairs claim goes to the later one (Conv2d, ReLU, MaxPool2d: relu_max_pool2d,
            # whose backward is one launch, where the activation's backward would be one of its own)
            if self._fuses(layers, i) and not self._fuses(layers, i + 1):
                x = layers[i + 1].forward_fused(layers[i], x)
                self._fused.add(i + 1)
                i += 2
            else:
                x = layers[i].forward(x)
                i += 1
        return x

    @property
    def takes_input_activation(self):
        return bool(self._children) and self.layers[0].takes_input_activation

    def _activation_pass(self, layers, j):
        """Layer j's output_activation() when its backward is a pass of its own: not recomputed by
        the layer it runs fused after (``backward_takes_activation``: BatchNorm), else None. Layers
        that only reshape (Flatten, Unflatten: ``reshapes``) are looked through: the activation's
        outputs, reshaped, are then the input of the layer after them."""
        while j > 0 and getattr(layers[j], "reshapes", False):
            j -= 1
        spec = layers[j].output_activation()
        if spec is None or (j in getattr(self, "_fused", ()) and getattr(layers[j - 1], "backward_takes_activation",
                                                                         False)):
            return None
        return spec

    def output_activation(self):
        return self._activation_pass(self.layers, len(self) - 1) if len(self) else None

    def backward(self, dy, input_grad: bool = True, input_activation=None, skip_output_activation: bool = False):
        """The layers' backward in reverse. A layer that takes_input_activation after an activation
        whose backward is a pass of its own (_activation_pass) takes that backward into its own
        (input_activation), and the activation's pass is skipped; ``input_activation`` is passed so to
        the first layer. ``skip_output_activation``: dy is the gradient w.r.t. the input of the
        activation this Sequential ends with (output_activation()), a later module having applied
        its backward."""
        layers, fused = self.layers, getattr(self, "_fused", set())
        if input_activation is not None and not self.takes_input_activation:
            raise ValueError(f"input_activation: got {input_activation!r}, expected None (the first layer, "
                             f"{type(layers[0]).__name__ if layers else 'none'}, takes none)")
        if skip_output_activation and self.output_activation() is None:
            raise ValueError("skip_output_activation: got True, expected False (this Sequential does not end with an "
                             "activation pass of its own: output_activation() is None)")
        i, skip = len(layers) - 1, skip_output_activation
        while i >= 0:
            first = i - 1 if i in fused else i   # the unit layers[first..i] runs as one
            want = input_grad or first > 0
            act = input_activation if first == 0 else (
                self._activation_pass(layers, first - 1) if layers[first].takes_input_activation else None)
            kw = {"input_activation": act} if want and act is not None else {}
            reshapes = getattr(layers[i], "reshapes", False)
            if skip and not reshapes:   # layers[i] is the activation whose backward was applied after it
                dy = layers[first].backward(dy, input_grad=want, **kw) if first < i else dy
            elif first < i:
                dy = layers[i].backward_fused(layers[first], dy, input_grad=want, **kw)
            else:
                dy = layers[i].backward(dy, input_grad=want, **kw)
            skip = (bool(kw) and first > 0) or (skip and reshapes)   # a reshape passes the skip on
            i = first - 1
        return dy

