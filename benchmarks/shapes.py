"""Benchmark shapes from the design notes, shared by the CPU and GPU benchmarks."""

# name: (N, C, H, W, K, R, S, stride, pad)
CONV_SHAPES = {
    "lenet.conv1": (128, 1, 28, 28, 32, 5, 5, 1, 2),
    "lenet.conv2": (128, 32, 14, 14, 64, 5, 5, 1, 2),
    "dcgan.d2": (128, 64, 14, 14, 128, 4, 4, 2, 1),
    "dcgan.d3": (128, 128, 7, 7, 256, 3, 3, 2, 1),
    "resnet.c2": (64, 64, 56, 56, 64, 3, 3, 1, 1),
    "resnet.c4": (32, 256, 14, 14, 256, 3, 3, 1, 1),
}

# ReLU and 2x2 pooling input
ELEMENTWISE_SHAPE = (64, 64, 56, 56)

# LeNet (DESIGN.md) at batch 128
BATCH = 128


def conv_flops(shape):
    """Multiply-adds x 2 of one conv pass (all three passes do the same arithmetic)."""
    n, c, h, w, k, r, s, st, pd = shape
    p = (h + 2 * pd - r) // st + 1
    q = (w + 2 * pd - s) // st + 1
    return 2 * n * k * p * q * c * r * s


def lenet(rng, dtype=None):
    """The LeNet of the design notes for 28x28 single-channel inputs (10 classes)."""
    import numpy as np

    from fastconv import nn

    dtype = dtype or np.float32
    return nn.Sequential(
        nn.Conv2d(1, 32, 5, padding=2, rng=rng, dtype=dtype), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 5, padding=2, rng=rng, dtype=dtype), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(3136, 256, rng=rng, dtype=dtype), nn.ReLU(), nn.Linear(256, 10, rng=rng, dtype=dtype))


def torch_lenet():
    import torch.nn as tnn

    return tnn.Sequential(
        tnn.Conv2d(1, 32, 5, padding=2), tnn.ReLU(), tnn.MaxPool2d(2),
        tnn.Conv2d(32, 64, 5, padding=2), tnn.ReLU(), tnn.MaxPool2d(2),
        tnn.Flatten(), tnn.Linear(3136, 256), tnn.ReLU(), tnn.Linear(256, 10))
