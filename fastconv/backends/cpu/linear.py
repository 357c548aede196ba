"""CPU linear layer: y = x @ w.T + b through BLAS."""

from __future__ import annotations


def linear_forward(x, w, b):
    y = x @ w.T
    if b is not None:
        y += b
    return y


def linear_backward_data(dy, w):
    return dy @ w


def linear_backward_weight(dy, x):
    return dy.T @ x, dy.sum(axis=0)
