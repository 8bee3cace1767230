"""Shared fixtures: tiny real torch classifiers and small images, so the math is checked fast."""
from __future__ import annotations

import socket

import pytest
import torch
from torch import nn

from hsets_widgets.model.models import wrap_module


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (for a test's own server)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class TinyNet(nn.Module):
    """A small CNN with ReLU modules, a functional relu, max-pool and a linear head."""

    def __init__(self, n_classes: int = 5, width: int = 4):
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 3, padding=1)
        self.act1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.head = nn.Linear(4 * width, n_classes)

    def forward(self, x):
        x = self.act1(self.conv1(x))
        x = torch.nn.functional.relu(self.conv2(x))  # functional call: must be caught too
        return self.head(self.pool(x).flatten(1))


def tiny_classifier(dtype=torch.float64, seed: int = 0, n_classes: int = 5, size: int = 8,
                    width: int = 4):
    torch.manual_seed(seed)
    net = TinyNet(n_classes, width).to(dtype)
    return wrap_module(net, normalize=lambda x: x * 2.0 - 1.0, input_size=size,
                       class_names=[f"c{i}" for i in range(n_classes)], name="tiny")


@pytest.fixture
def tiny64():
    """Float64 tiny classifier on 8x8 images."""
    return tiny_classifier(torch.float64)


@pytest.fixture
def image8():
    g = torch.Generator().manual_seed(1)
    return torch.rand(3, 8, 8, generator=g, dtype=torch.float64)


@pytest.fixture
def photo48():
    """A real photo (scikit-image's chelsea) at 48x48, float32 (H, W, 3) in [0, 1]."""
    from hsets_widgets.model.images import load_image, resize_center_crop

    return resize_center_crop(load_image("chelsea"), 48)


@pytest.fixture
def small32():
    """Float32 tiny classifier on 48x48 images (for end-to-end runs)."""
    return tiny_classifier(torch.float32, size=48, width=6)


@pytest.fixture
def one_torch_thread():
    """One torch thread for tests that run a model beside a background worker or subprocess,
    so the 2 cores are not oversubscribed."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
