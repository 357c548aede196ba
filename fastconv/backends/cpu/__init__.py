"""NumPy CPU backend: the fallback when there is no GPU, and the reference every GPU kernel is
validated against. One module per op family; every op is re-exported here, which is where
fastconv.backend looks them up.

Convolution is im2col + one BLAS matmul per batch chunk and group (conv.py); pooling loops over
the R x S window offsets with strided slices (pool.py). There are no Python loops over pixels or
the batch. Arguments arrive validated by fastconv.ops.
"""

from .bias import bias_add  # noqa: F401
from .conv import conv2d_forward, conv2d_backward_data, conv2d_backward_weight, conv2d_backward_bias  # noqa: F401
from .pool import (max_pool2d_forward, max_pool2d_backward, avg_pool2d_forward, avg_pool2d_backward,  # noqa: F401
                   relu_max_pool2d_forward, relu_max_pool2d_backward)
from .activation import (relu_forward, relu_backward, leaky_relu_forward, leaky_relu_backward,  # noqa: F401
                         sigmoid_forward, sigmoid_backward, tanh_forward, tanh_backward)
from .batchnorm import batchnorm_forward, batchnorm_backward  # noqa: F401
from .linear import linear_forward, linear_backward, linear_backward_data, linear_backward_weight  # noqa: F401
from .embedding import embedding_forward, embedding_backward, class_projection_forward  # noqa: F401
from .dropout import fmix32, dropout_mask, dropout_forward, dropout_backward  # noqa: F401
from .loss import softmax_cross_entropy, bce_with_logits, gan_stats  # noqa: F401
from .optim import accumulate, adam_update, sgd_update  # noqa: F401
