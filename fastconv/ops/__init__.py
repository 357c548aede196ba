"""The op interface: argument checks, then one call into the backend chosen by fastconv.backend.

Every function takes numpy arrays (CPU, float32 or float64) or cupy arrays (GPU, float32) and
returns arrays of the same kind. Layouts are NCHW; conv weights are ``K x C/groups x R x S`` as in
PyTorch. Bad arguments raise ValueError/TypeError naming the argument, the value received and
what was expected (the checks are in :mod:`fastconv.argcheck`). ``kernels=`` picks the GPU kernel
family for one call ("cupy" or "numba").

Shape letters: N batch, C input channels, H x W input size, K output channels, R x S filter
size, P x Q output size. One module per op family; every op is re-exported here, so
``fastconv.ops.conv2d_forward`` is the public name.
"""

from ..argcheck import conv_geometry, conv_out_size, conv_transpose_out_size, pool_hyper, real  # noqa: F401
from .activation import (leaky_relu_backward, leaky_relu_forward, relu_backward, relu_forward,  # noqa: F401
                         sigmoid_backward, sigmoid_forward, tanh_backward, tanh_forward)
from .batchnorm import batchnorm_backward, batchnorm_forward  # noqa: F401
from .bias import bias_add  # noqa: F401
from .conv import (conv2d_backward, conv2d_backward_bias, conv2d_backward_data, conv2d_backward_weight,  # noqa: F401
                   conv2d_forward, conv_transpose2d_backward, conv_transpose2d_backward_data,
                   conv_transpose2d_backward_weight, conv_transpose2d_forward)
from .dropout import dropout_backward, dropout_forward  # noqa: F401
from .embedding import class_projection_forward, embedding_backward, embedding_forward  # noqa: F401
from .linear import linear_backward, linear_backward_data, linear_backward_weight, linear_forward  # noqa: F401
from .loss import bce_with_logits, gan_stats, softmax_cross_entropy  # noqa: F401
from .optim import accumulate, adam_update, sgd_update  # noqa: F401
from .pool import (avg_pool2d_backward, avg_pool2d_forward, max_pool2d_backward, max_pool2d_forward,  # noqa: F401
                   relu_max_pool2d_backward, relu_max_pool2d_forward)
