"""The benchmark shapes, in this one place: the CPU and GPU benchmarks and ``fastconv check
--bench-shapes`` (which adds dilation 1, groups 1) read them from here."""

# name: (N, C, H, W, K, R, S, stride, pad)
CONV_SHAPES = {
    "lenet.conv1": (128, 1, 28, 28, 32, 5, 5, 1, 2),
    "lenet.conv2": (128, 32, 14, 14, 64, 5, 5, 1, 2),
    "dcgan.d2": (128, 64, 14, 14, 128, 4, 4, 2, 1),
    "dcgan.d3": (128, 128, 7, 7, 256, 3, 3, 2, 1),
    "resnet.c2": (64, 64, 56, 56, 64, 3, 3, 1, 1),
    "resnet.c4": (32, 256, 14, 14, 256, 3, 3, 1, 1),
}

# ReLU and 2x2 pooling input of the CPU benchmarks
ELEMENTWISE_SHAPE = (64, 64, 56, 56)

# the GPU bandwidth rows (activations, pooling, batchnorm, bias gradient): 205 MB of float32, about
# 4x the L2 of an H100 (50 MB) and 3.4x an H200's (60 MB), so every pass streams from HBM
BANDWIDTH_SHAPE = (256, 64, 56, 56)

# the benchmark LeNet (the trainer's default CNN) at batch 128
BATCH = 128


def conv_flops(shape):
    """Multiply-adds x 2 of one conv pass (all three passes do the same arithmetic)."""
    from fastconv.argcheck import conv_out_size

    n, c, h, w, k, r, s, st, pd = shape
    return 2 * n * k * conv_out_size(h, r, st, pd, 1) * conv_out_size(w, s, st, pd, 1) * c * r * s


def conv_arrays(cp, shape, rng):
    """The float32 operands of one CONV_SHAPES shape as ``cp`` arrays, drawn from ``rng`` in this
    order: x (N, C, H, W), w (K, C, R, S) scaled by 0.1, b (K,), dy (N, K, P, Q): (x, w, b, dy)."""
    import numpy as np

    from fastconv.argcheck import conv_out_size

    n, c, h, w, k, r, s, st, pd = shape
    x = cp.asarray(rng.standard_normal((n, c, h, w), dtype=np.float32))
    wt = cp.asarray(rng.standard_normal((k, c, r, s), dtype=np.float32) * 0.1)
    b = cp.asarray(rng.standard_normal((k,), dtype=np.float32))
    p, q = conv_out_size(h, r, st, pd, 1), conv_out_size(w, s, st, pd, 1)
    dy = cp.asarray(rng.standard_normal((n, k, p, q), dtype=np.float32))
    return x, wt, b, dy


def conv_operands(cp, torch, shape, rng):
    """conv_arrays on the GPU, then torch views of the four: (x, w, b, dy, tx, tw, tb, tdy)."""
    arrays = conv_arrays(cp, shape, rng)
    return (*arrays, *(torch.from_dlpack(a) for a in arrays))


def lenet(rng):
    """The benchmark LeNet: the trainer's default CNN (fastconv.train.cnn.build_cnn) for 28x28
    single-channel inputs and 10 classes, float32."""
    from fastconv.train.cnn import build_cnn

    return build_cnn(rng=rng)


def torch_lenet():
    """The same network in PyTorch (the benchmark peer)."""
    import torch.nn as tnn

    return tnn.Sequential(
        tnn.Conv2d(1, 32, 5, padding=2), tnn.ReLU(), tnn.MaxPool2d(2),
        tnn.Conv2d(32, 64, 5, padding=2), tnn.ReLU(), tnn.MaxPool2d(2),
        tnn.Flatten(), tnn.Linear(3136, 256), tnn.ReLU(), tnn.Linear(256, 10))
