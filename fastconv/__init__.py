"""fastconv: train convolutional networks and GANs on hand-written GPU kernels.

``import fastconv`` needs only NumPy; the GPU kernel families load when CuPy arrays reach an op.
"""

from . import ops, settings
from .backend import (device_of, gpu_available, kernel_family, set_kernel_family,  # noqa: F401
                      to_device)
from .settings import configure, using  # noqa: F401

__version__ = "0.1.0"
__all__ = ["ops", "settings", "using", "configure", "to_device", "device_of", "gpu_available", "kernel_family",
           "set_kernel_family", "__version__"]
