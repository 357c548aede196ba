"""The "cupy" GPU kernel family: launchers for the CUDA C kernels in kernels/*.cu.

Every op of notes/INTERFACES.md, with the signature of fastconv.backends.cpu. Arguments arrive
validated by fastconv.ops; the launchers still check what a RawKernel cannot (dtype float32,
device, C-contiguity: non-contiguous inputs are copied to contiguous ones) and pass scalars as
numpy int32/int64/float32 so the kernel sees the C types it declares.

One module per op family (conv.py launches kernels/conv.cu, conv_smallc.cu, conv_tf32.cu and winograd.cu
and, through bias.py, kernels/bias.cu, its channels-last copies through channels_last.py; activation.py
and dropout.py kernels/activation.cu, pool.py kernels/pool.cu and pool_2x2.cu, batchnorm.py
kernels/batchnorm.cu, loss.py kernels/loss.cu, optim.py kernels/optim.cu, linear.py kernels/linear.cu, embedding.py kernels/embedding.cu); launch.py holds what they share
(allocation with NaN poisoning, argument and int32 checks, the launch); autotune.py the autotune
setting (conv passes that pick their kernels by timing them). Five modules import without CuPy and
are unit-tested on the CPU: config.py (grids, tile shapes, split-K, the kernel-name table),
smallc_config.py (the small-channel kernels' limits and tiles, shared with the Numba family),
winograd_config.py (when a pass runs by Winograd and its products' tile, shared likewise), loader.py (finding, #define-ing and compiling the .cu files) and autotune.py (its candidates).

The ops are looked up here by name (``getattr``, as fastconv.backend does); the op-family
modules, which import CuPy, load on the first such lookup, so that importing config or loader
never needs CuPy.
"""

import importlib

OP_FAMILIES = ("conv", "pool", "activation", "batchnorm", "linear", "dropout", "loss", "optim", "embedding")
_SHARED = ("launch", "bias")  # GPUOutOfMemoryError, num_sms; bias.cu: the conv bias gradient, bias_add
_CPU_MODULES = ("config", "smallc_config", "winograd_config", "loader", "autotune")  # import without CuPy


def __getattr__(name: str):
    # submodule names fall through, so that ``from . import config`` imports config.py alone
    if not name.startswith("_") and name not in OP_FAMILIES + _SHARED + _CPU_MODULES:
        for family in OP_FAMILIES + _SHARED:
            fn = getattr(importlib.import_module(f"{__name__}.{family}"), name, None)
            if fn is not None:
                return fn
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    names = set(globals())
    for family in OP_FAMILIES:
        names.update(n for n in dir(importlib.import_module(f"{__name__}.{family}")) if not n.startswith("_"))
    return sorted(names)
