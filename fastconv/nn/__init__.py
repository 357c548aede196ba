"""The layer API: Module, Sequential, layers, losses and initialisers."""

from . import init
from .batchnorm import BatchNorm1d, BatchNorm2d
from .dropout import Dropout
from .layers import (AvgPool2d, Conv2d, ConvTranspose2d, Flatten, LeakyReLU, Linear, MaxPool2d, ReLU, Sigmoid, Tanh,
                     Unflatten)
from .losses import BCEWithLogitsLoss, CrossEntropyLoss
from .module import Module, Parameter, Sequential

__all__ = ["init", "Module", "Parameter", "Sequential", "Conv2d", "ConvTranspose2d", "Linear", "ReLU", "LeakyReLU",
           "Tanh", "Sigmoid", "MaxPool2d", "AvgPool2d", "BatchNorm1d", "BatchNorm2d", "Dropout", "Flatten",
           "Unflatten", "CrossEntropyLoss", "BCEWithLogitsLoss"]
