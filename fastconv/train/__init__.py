"""Trainers: a LeNet-style classifier (cnn) and GANs (gan: MLP GAN and DCGAN), with shared plumbing."""

from .cnn import CNNConfig, build_cnn, evaluate, train_cnn
from .common import NonFiniteLossError
from .gan import GANConfig, build_dcgan, build_mlp_gan, train_gan

__all__ = ["CNNConfig", "GANConfig", "NonFiniteLossError", "build_cnn", "build_dcgan", "build_mlp_gan", "evaluate",
           "train_cnn", "train_gan"]
