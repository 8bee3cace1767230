"""Forward-only passes through ONNX Runtime: the same logits as the classifier, or the classifier."""
import numpy as np
import pytest
import torch
from conftest import tiny_classifier

from hsets_widgets.hsets.curvature import curvature
from hsets_widgets.hsets.integrated_gradients import integrated_gradients
from hsets_widgets.model.forward import ForwardWarning, counting, exported, logits
from hsets_widgets.model.models import wrap_module
from hsets_widgets.model.scores import ScoreFn

pytest.importorskip("onnxruntime")


@pytest.fixture
def clf():
    return tiny_classifier(torch.float32, size=16)


@pytest.fixture
def batch():
    return torch.rand(5, 3, 16, 16, generator=torch.Generator().manual_seed(0))


def test_a_forward_only_batch_gives_the_classifiers_logits_through_onnx(clf, batch):
    with torch.no_grad(), counting() as n:
        want = clf(batch)
        got = logits(clf, batch)
    assert exported(clf) and n[0] == len(batch)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    with torch.no_grad():   # another batch size, the same session
        torch.testing.assert_close(logits(clf, batch[:2]), want[:2], rtol=1e-5, atol=1e-5)


def test_changed_weights_are_never_answered_by_the_old_session(clf, batch):
    with torch.no_grad():
        before = logits(clf, batch)
        for p in clf.module.parameters():
            p.mul_(1.5)      # fine-tuning in place in the same notebook
        after = logits(clf, batch)
        torch.testing.assert_close(after, clf(batch), rtol=1e-5, atol=1e-5)
    assert not torch.allclose(before, after)


def test_gradients_curvature_and_other_dtypes_stay_in_pytorch(clf, batch):
    f = ScoreFn(clf, 1)
    x = batch.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(f(x).sum(), x)           # a gradient still flows
    assert g.abs().sum() > 0
    with torch.no_grad(), curvature("softplus", beta=2.0):
        smooth = logits(clf, batch)                      # the curvature's activations, not ONNX's ReLU
        torch.testing.assert_close(smooth, clf(batch))
    with torch.no_grad():
        assert not torch.allclose(smooth, logits(clf, batch))
    clf64 = tiny_classifier(torch.float64, size=16)
    with torch.no_grad():
        logits(clf64, batch.double())
    assert not exported(clf64)


def test_torch_backend_and_a_bad_backend_name(clf, batch, monkeypatch):
    monkeypatch.setenv("HSETS_FORWARD", "torch")
    with torch.no_grad():
        logits(clf, batch)
    assert not exported(clf)
    monkeypatch.setenv("HSETS_FORWARD", "tensorrt")
    with pytest.raises(ValueError, match="HSETS_FORWARD='tensorrt' is not a forward backend"):
        with torch.no_grad():
            logits(clf, batch)


class Unexportable(torch.nn.Module):
    """A running maximum over the outputs: ``aten::cummax`` has no ONNX (opset 17) form."""

    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(3 * 16 * 16, 4)

    def forward(self, x):
        return torch.cummax(self.lin(x.flatten(1)), 1).values


def test_a_model_that_cannot_be_exported_warns_once_and_gives_its_own_logits(batch):
    import warnings

    m = wrap_module(Unexportable().eval(), normalize=lambda x: x, input_size=16, class_names=list("abcd"),
                    name="custom-op")
    with torch.no_grad(), pytest.warns(ForwardWarning, match="custom-op: forward passes stay in PyTorch"):
        first = logits(m, batch)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("error")
        torch.testing.assert_close(logits(m, batch), first)
        torch.testing.assert_close(first, m(batch))
    assert not exported(m)


def test_adaptive_ig_is_unchanged_by_onnx_probes(clf, monkeypatch):
    x = torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(3))
    fast = integrated_gradients(x, clf, 1, n_steps=16, rule="adaptive")
    monkeypatch.setenv("HSETS_FORWARD", "torch")
    slow = integrated_gradients(x, clf, 1, n_steps=16, rule="adaptive")
    np.testing.assert_allclose(fast.attribution.numpy(), slow.attribution.numpy(), rtol=1e-4, atol=1e-6)
