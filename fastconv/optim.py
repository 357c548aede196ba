"""Optimizers: SGD (momentum, weight decay, Nesterov) and Adam, with PyTorch's update rules.

State arrays live beside their parameter (created on its device at the first step); state_dict()
returns {name: array} with scalars as 0-d arrays, so it can be written to safetensors.
"""

from __future__ import annotations

import numpy as np

from . import ops
from .backend import array_module, device_of, is_cupy_array, to_device
from .ops import real


class Optimizer:
    _slots: tuple[str, ...] = ()

    def __init__(self, params, lr):
        self.params = list(params)
        if not self.params:
            raise ValueError("params: got an empty list, expected the parameters to optimise")
        self.lr = real(lr, "lr", 0.0, lo_open=True)
        self.state: dict[str, list] = {slot: [None] * len(self.params) for slot in self._slots}
        self.steps = 0

    def zero_grad(self):
        for p in self.params:
            p.grad = None

    def _slot(self, slot, i):
        a = self.state[slot][i]
        p = self.params[i].data
        if a is None or device_of(a) != device_of(p):
            a = array_module(p).zeros_like(p) if a is None else to_device(a, device_of(p))
            self.state[slot][i] = a
        return a

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

    def step(self):
        """One update of every parameter with a gradient, in one kernel launch on the GPU."""
        self.steps += 1
        live = [i for i, p in enumerate(self.params) if p.grad is not None]
        if live:
            ops.sgd_update_multi([self.params[i].data for i in live], [self.params[i].grad for i in live],
                                 [self._slot("velocity", i) for i in live] if self.momentum else None, self.lr,
                                 self.momentum, self.weight_decay, self.nesterov)


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
        # some step is not advanced (as in PyTorch). On the GPU they live on the device, as int32
        # counters (count, 0) that the update advances (so a CUDA graph of the step counts right);
        # self.t is read back from them when asked for (state_dict).
        self.t = [0] * len(self.params)
        self._counters = None

    def step(self):
        """One update of every parameter with a gradient; on the GPU in one kernel launch that also
        advances the device step counters."""
        self.steps += 1
        live = [i for i, p in enumerate(self.params) if p.grad is not None]
        if not live:
            return
        if is_cupy_array(self.params[live[0]].data):
            if self._counters is None:
                cp = array_module(self.params[live[0]].data)
                self._counters = cp.asarray(np.array([[t, 0] for t in self.t], np.int32))
            ops.adam_update_multi([self.params[i].data for i in live], [self.params[i].grad for i in live],
                                  [self._slot("m", i) for i in live], [self._slot("v", i) for i in live],
                                  [self._counters[i] for i in live], self.lr, self.betas[0], self.betas[1], self.eps,
                                  self.weight_decay)
            return
        for i in live:
            self.t[i] += 1
            ops.adam_update(self.params[i].data, self.params[i].grad, self._slot("m", i), self._slot("v", i),
                            self.t[i], self.lr, self.betas[0], self.betas[1], self.eps, self.weight_decay)

    def step_counts(self) -> list:
        """The per-parameter step counts (read from the device counters on the GPU)."""
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
        self._counters = None   # made again from self.t at the next GPU step
