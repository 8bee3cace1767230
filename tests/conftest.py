"""Shared fixtures and helpers: tiny real torch classifiers and small images, so the math is checked
fast; the command line run in this process; guards that fail a test if a model loads or a server
starts too early; a bounded wait; the hypothesis settings of the property tests."""
from __future__ import annotations

import socket
import time

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, settings
from PIL import Image
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


def imagenet_tiny(size: int = 24):
    """The tiny classifier in float32 with ImageNet's 1000 outputs (for runs that read labels from
    ImageNet wnids)."""
    return tiny_classifier(torch.float32, n_classes=1000, size=size, width=8)


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


def save_photos(folder, photo, n=2):
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.fromarray((np.roll(photo, 7 * i, 1) * 255).astype(np.uint8)).save(folder / f"p{i}.png")
    return folder


# ---- the command line, run in this process -------------------------------------------------------
def run_cli(capsys, *argv):
    """``hsets ARGV`` in this process: (exit code, stdout, stderr)."""
    from hsets_widgets.cli.main import main as hsets

    code = hsets([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def one_line_error(err: str, command: str) -> str:
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith(f"hsets {command}: error: ") and "Traceback" not in err, err
    return lines[0]


@pytest.fixture
def no_model_load(monkeypatch):
    """Fail the test if any command loads a model: the error must come before it."""
    import hsets_widgets.model.models as models

    def refuse(*a, **k):
        raise AssertionError("the model was loaded before the bad setting was refused")

    monkeypatch.setattr(models, "load_classifier", refuse)


@pytest.fixture
def no_server(monkeypatch):
    """Fail the test if ``hsets explore`` starts its server: the error must come before it."""
    from hsets_widgets.cli import explore

    def refuse(*a, **k):
        raise AssertionError("a server was started before the bad setting was refused")

    monkeypatch.setattr(explore.subprocess, "Popen", refuse)


# ---- waiting for something to happen, bounded --------------------------------------------------
def wait_until(predicate, timeout: float, what: str = "the condition", interval: float = 0.1) -> None:
    """Poll ``predicate()`` until it is true; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


# ---- hypothesis settings of the property tests -------------------------------------------------
FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FILES = settings(max_examples=60, deadline=None,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
MANY = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                        HealthCheck.function_scoped_fixture])
