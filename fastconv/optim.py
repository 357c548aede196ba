"""Optimizers: SGD (momentum, weight decay, Nesterov) and Adam, with PyTorch's update rules.

Flat storage: at its first step (at the first gradient a layer asks to write: Parameter.grad_out)
an optimizer moves its parameters into one contiguous buffer per
dtype (each Parameter's ``data`` becomes a view into it), with a gradient buffer and one buffer
per state slot (velocity; m and v) of the same layout, so one launch of the single-tensor update
(ops.sgd_update, ops.adam_update) updates every parameter. Each Parameter's ``grad_buffer`` is
its view of the gradient buffer: the gradient ops write the first gradient of a step into it
(their ``out``; see fastconv.nn.Parameter), with no copy, and the buffers persist, so a CUDA graph
of the step keeps its addresses.
The buffers are made again when a parameter's array was replaced (Module.to, astype).

Parameters without a gradient in a step are neither updated nor advanced (PyTorch's semantics):
the update runs over the runs of consecutive parameters that have one, one launch per run (one
launch in all when every parameter has a gradient), and Adam's per-parameter step counts split
a run where they differ. On the GPU the learning rate is a float32 device scalar the kernels
read (setting ``lr`` copies 4 bytes to it when the value changes, outside any captured step) and
Adam's step counts are device counters the kernel advances, so a graph of the step replays
schedules and bias corrections right.

state_dict() returns {name: array} with scalars as 0-d arrays and one state array per
parameter (a view of the flat buffer), so it can be written to safetensors; a parameter's state
appears once it has had a gradient.
"""

from __future__ import annotations

import weakref

import numpy as np

from . import ops
from .backend import array_module, device_of, to_device
from .ops import real


class Optimizer:
    _slots: tuple[str, ...] = ()

    def __init__(self, params, lr):
        self.params = list(params)
        if not self.params:
            raise ValueError("params: got an empty list, expected the parameters to optimise")
        self._lr = real(lr, "lr", 0.0, lo_open=True)
        self._lr_device = None   # float32 (1,) on the GPU, read by the update kernels
        self.state: dict[str, list] = {slot: [None] * len(self.params) for slot in self._slots}
        self.steps = 0
        self._views = None       # each parameter's data view while the flat buffers are current
        self._slot_views = {}    # slot -> each parameter's view of that slot's flat buffer
        self._groups = []        # (param indices, element bounds, data, grad, {slot: buffer}) per dtype
        self._runs = {}          # labels of a step -> the argument tuples of its update launches
        for p in self.params:    # a parameter asked for its first gradient's place makes the buffers
            p.make_buffers = weakref.WeakMethod(self._storage)

    @property
    def lr(self) -> float:
        return self._lr

    @lr.setter
    def lr(self, value):
        self._lr = float(value)
        if self._lr_device is not None and float(np.float32(self._lr)) != self._lr_written:
            self._write_lr()

    def _write_lr(self):
        self._lr_written = float(np.float32(self._lr))
        self._lr_device.set(np.array([self._lr], np.float32))

    def _lr_arg(self):
        return self._lr if self._lr_device is None else self._lr_device

    def zero_grad(self):
        for p in self.params:
            p.grad = None

    def _used_slots(self) -> tuple:
        return self._slots

    def _storage(self):
        """The flat buffers: made at the first step and whenever a parameter's array is no longer
        the view they hold; parameter values, gradients and state arrays are copied in."""
        if self._views is not None and all(p.data is v for p, v in zip(self.params, self._views)):
            return
        xp = array_module(*[p.data for p in self.params], names=[f"params[{i}]" for i in range(len(self.params))])
        device = device_of(self.params[0].data)
        by_dtype: dict = {}
        for i, p in enumerate(self.params):
            by_dtype.setdefault(p.data.dtype, []).append(i)
        self._groups, self._runs = [], {}
        self._slot_views = {slot: [None] * len(self.params) for slot in self._used_slots()}
        for dtype, idx in by_dtype.items():
            bounds = np.cumsum([0] + [self.params[i].data.size for i in idx]).tolist()
            data, grad = xp.empty(bounds[-1], dtype), xp.zeros(bounds[-1], dtype)
            slots = {slot: xp.zeros(bounds[-1], dtype) for slot in self._used_slots()}
            for k, i in enumerate(idx):
                p, lo, hi = self.params[i], bounds[k], bounds[k + 1]
                shape = p.data.shape
                data[lo:hi] = p.data.ravel()
                p.data, p.grad_buffer = data[lo:hi].reshape(shape), grad[lo:hi].reshape(shape)
                for slot, buf in slots.items():
                    view = self._slot_views[slot][i] = buf[lo:hi].reshape(shape)
                    if self.state[slot][i] is not None:
                        view[...] = to_device(self.state[slot][i], device)
                        self.state[slot][i] = view
            self._groups.append((idx, bounds, data, grad, slots))
        self._views = [p.data for p in self.params]
        if xp is not np and self._lr_device is None:
            self._lr_device = xp.empty(1, np.float32)
            self._write_lr()

    def _live(self) -> tuple:
        """Which parameters have a gradient this step; their gradients moved into the flat
        gradient buffer (a kernel copy, for a gradient set other than by Parameter.accumulate)
        and their state slots made visible to state_dict."""
        live = tuple(p.grad is not None for p in self.params)
        if any(live):
            self._storage()
        for i, p in enumerate(self.params):
            if live[i]:
                if p.grad is not p.grad_buffer:
                    ops.accumulate(p.grad_buffer, p.grad, add=False)
                    p.grad = p.grad_buffer
                for slot in self._slot_views:
                    if self.state[slot][i] is None:
                        self.state[slot][i] = self._slot_views[slot][i]
        return live

    def _update_runs(self, labels: tuple) -> list:
        """[(first param, last param + 1, data, grad, {slot: buffer}) slices] of each run of
        consecutive parameters of one dtype with equal labels (None: no gradient: not updated)."""
        runs = self._runs.get(labels)
        if runs is None:
            runs = self._runs[labels] = []
            for idx, bounds, data, grad, slots in self._groups:
                k = 0
                while k < len(idx):
                    if labels[idx[k]] is None:
                        k += 1
                        continue
                    j = k + 1
                    while j < len(idx) and idx[j] == idx[j - 1] + 1 and labels[idx[j]] == labels[idx[k]]:
                        j += 1
                    lo, hi = bounds[k], bounds[j]
                    runs.append((idx[k], idx[j - 1] + 1, data[lo:hi], grad[lo:hi],
                                 {slot: buf[lo:hi] for slot, buf in slots.items()}))
                    k = j
        return runs

    def state_dict(self) -> dict:
        d = {"steps": np.asarray(self.steps, np.int64), "lr": np.asarray(self.lr, np.float64)}
        for slot, arrays in self.state.items():
            for i, a in enumerate(arrays):
                if a is not None:
                    d[f"{slot}.{i}"] = a
        return d

    def load_state_dict(self, d: dict):
        """Restore step count, lr and state arrays from :meth:`state_dict` output.

        Atomic: every key, shape, dtype and value (steps an int >= 0, lr finite and > 0, state
        arrays floating and finite) is checked, and every array converted, before anything
        changes, so an error leaves the optimizer as it was.
        """
        self._apply(self._check_state(d))
        return self

    def _scalar(self, d: dict, key: str):
        a = d[key]
        if not hasattr(a, "shape") or tuple(a.shape) not in ((), (1,)):
            raise ValueError(f"state[{key!r}]: got {a!r}, expected a 0-d array")
        return to_device(a, "cpu").reshape(())

    def _count(self, d: dict, key: str) -> int:
        a = self._scalar(d, key)
        if a.dtype.kind not in "iu" or int(a) < 0:
            raise ValueError(f"state[{key!r}]: got {a!r}, expected an int >= 0")
        return int(a)

    def _check_state(self, d: dict) -> dict:
        """The new attribute values from ``d``, all checked; raises before anything is set."""
        if "steps" not in d:
            raise KeyError(f"state: missing key 'steps'; got keys {sorted(d)[:8]}")
        known = {"steps", "lr"} | {f"{slot}.{i}" for slot in self.state for i in range(len(self.params))}
        unexpected = sorted(set(d) - known - self._extra_keys())
        if unexpected:
            raise KeyError(f"state: unexpected keys {unexpected[:8]}; expected 'steps', 'lr' and "
                           f"{', '.join(repr(s + '.<i>') for s in self.state)} of a {type(self).__name__}")
        new = {"steps": self._count(d, "steps"), "state": {}}
        if "lr" in d:
            new["lr"] = real(float(self._scalar(d, "lr")), "state['lr']", 0.0, lo_open=True)
        for slot in self.state:
            arrays = []
            for i, p in enumerate(self.params):
                key, a = f"{slot}.{i}", d.get(f"{slot}.{i}")
                if a is not None:
                    if tuple(a.shape) != tuple(p.data.shape):
                        raise ValueError(f"state[{key!r}]: got shape {tuple(a.shape)}, expected {tuple(p.data.shape)}")
                    if a.dtype.kind != "f":
                        raise TypeError(f"state[{key!r}]: got dtype {a.dtype}, expected a floating dtype")
                    a = to_device(a, device_of(p.data)).astype(p.data.dtype, copy=True)
                    if not bool(array_module(a).isfinite(a).all()):
                        raise ValueError(f"state[{key!r}]: got non-finite values, expected finite optimizer state")
                arrays.append(a)
            new["state"][slot] = arrays
        return new

    def _extra_keys(self) -> set:
        return set()

    def _apply(self, new: dict) -> None:
        self.steps = new["steps"]
        self.lr = new.get("lr", self.lr)
        self.state = new["state"]
        self._views = None      # the flat buffers are made again, with these state arrays, at the next step


class SGD(Optimizer):
    """p -= lr * v with v = momentum * v + (g + weight_decay * p) (Nesterov: g + momentum * v)."""

    _slots = ("velocity",)

    def __init__(self, params, lr, momentum=0.0, weight_decay=0.0, nesterov=False):
        super().__init__(params, lr)
        self.momentum = real(momentum, "momentum", 0.0, 1.0, hi_open=True)
        self.weight_decay = real(weight_decay, "weight_decay", 0.0)
        if nesterov and not self.momentum:
            raise ValueError("nesterov: got True with momentum=0, expected momentum > 0")
        self.nesterov = bool(nesterov)

    def _used_slots(self) -> tuple:
        return self._slots if self.momentum else ()

    def step(self):
        """One update of every parameter with a gradient: one kernel launch over the flat buffers."""
        self.steps += 1
        live = self._live()
        for _, _, data, grad, slots in self._update_runs(tuple(0 if g else None for g in live)):
            ops.sgd_update(data, grad, slots.get("velocity"), self._lr_arg(), self.momentum, self.weight_decay,
                           self.nesterov)


class Adam(Optimizer):
    """Kingma & Ba (2015) with bias correction; weight_decay adds weight_decay * p to the gradient."""

    _slots = ("m", "v")

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        super().__init__(params, lr)
        if not (isinstance(betas, (tuple, list)) and len(betas) == 2):
            raise TypeError(f"betas: got {betas!r}, expected a pair of numbers in [0, 1)")
        self.betas = (real(betas[0], "betas[0]", 0.0, 1.0, hi_open=True),
                      real(betas[1], "betas[1]", 0.0, 1.0, hi_open=True))
        self.eps = real(eps, "eps", 0.0, lo_open=True)
        self.weight_decay = real(weight_decay, "weight_decay", 0.0)
        # per-parameter step counts for the bias correction: a parameter without a gradient in
        # some step is not advanced (as in PyTorch). They live beside the parameters as int32
        # counters (count, 0) that the update advances (so a CUDA graph of the step counts right);
        # self.t is read back from them when asked for (state_dict). self._classes labels the
        # parameters whose counts are equal (split by every step's gradients), so one update can
        # cover them all without reading the counts on the host.
        self.t = [0] * len(self.params)
        self._counters = None
        self._classes = None

    def step(self):
        """One update of every parameter with a gradient, one kernel launch over the flat buffers
        (one per run of equal step counts), which also advances the step counters."""
        self.steps += 1
        live = self._live()
        if not any(live):
            return
        if self._counters is None or device_of(self._counters) != device_of(self.params[0].data):
            self.step_counts()
            self._counters = to_device(np.array([[t, 0] for t in self.t], np.int32), device_of(self.params[0].data))
            self._classes = tuple(self.t)
        split: dict = {}
        self._classes = tuple(split.setdefault((c, g), len(split)) for c, g in zip(self._classes, live))
        for first, end, data, grad, slots in self._update_runs(tuple(c if g else None
                                                                     for c, g in zip(self._classes, live))):
            ops.adam_update(data, grad, slots["m"], slots["v"], self._counters[first:end], self._lr_arg(),
                            self.betas[0], self.betas[1], self.eps, self.weight_decay)

    def step_counts(self) -> list:
        """The per-parameter step counts (read from the counters, on the GPU a device read)."""
        if self._counters is not None:
            self.t = [int(c) for c in to_device(self._counters[:, 0], "cpu")]
        return self.t

    def state_dict(self) -> dict:
        self.step_counts()
        d = super().state_dict()
        d.update({f"t.{i}": np.asarray(t, np.int64) for i, t in enumerate(self.t)})
        return d

    def _extra_keys(self) -> set:
        return {f"t.{i}" for i in range(len(self.params))}

    def _check_state(self, d: dict) -> dict:
        new = super()._check_state(d)
        new["t"] = [self._count(d, f"t.{i}") if f"t.{i}" in d else new["steps"] for i in range(len(self.params))]
        return new

    def _apply(self, new: dict) -> None:
        super()._apply(new)
        self.t = new["t"]
        self._counters = None   # made again from self.t at the next step
