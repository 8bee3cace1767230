"""The fused twin: batch norm folded into convolutions for gradient passes, same function."""
import copy

import pytest
import torch
from torch import nn

from hsets_widgets.hsets.hessian import hessian_rows
from hsets_widgets.hsets.integrated_gradients import integrated_gradients
from hsets_widgets.model.forward import counting, twin
from hsets_widgets.model.fused import fold_batch_norm
from hsets_widgets.model.models import load_classifier, wrap_module
from hsets_widgets.model.scores import ScoreFn


class StandardisedConv(nn.Conv2d):
    """Weight standardisation (as timm's StdConv2d): the weights are renormalised in
    ``forward``, so scaling them (what folding does) changes nothing and a fold would be wrong."""

    def forward(self, x):
        w = self.weight
        w = (w - w.mean(dim=(1, 2, 3), keepdim=True)) / (w.std(dim=(1, 2, 3), keepdim=True) + 1e-5)
        return nn.functional.conv2d(x, w, self.bias, self.stride, self.padding)


class BNNet(nn.Module):
    """conv-BN-ReLU6, a conv whose output also feeds a skip connection (not foldable), a
    weight-standardised conv before a BN, and a BN after a linear layer's reshape."""

    def __init__(self, std_conv: bool = False):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(6)
        self.conv2 = nn.Conv2d(6, 6, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(6)
        self.conv3 = (StandardisedConv if std_conv else nn.Conv2d)(6, 6, 1)
        self.bn3 = nn.BatchNorm2d(6)
        self.head = nn.Linear(6, 4)
        g = torch.Generator().manual_seed(0)
        for bn in (self.bn1, self.bn2, self.bn3):
            bn.running_mean.copy_(torch.randn(6, generator=g) * 0.3)
            bn.running_var.copy_(torch.rand(6, generator=g) + 0.5)
            bn.weight.data.copy_(torch.rand(6, generator=g) + 0.5)
            bn.bias.data.copy_(torch.randn(6, generator=g) * 0.1)

    def forward(self, x):
        x = nn.functional.relu6(self.bn1(self.conv1(x)))
        y = self.conv2(x)
        x = nn.functional.relu(self.bn2(y)) + y        # conv2's output is read twice: no fold
        x = nn.functional.relu(self.bn3(self.conv3(x)))
        return self.head(x.mean(dim=(2, 3)))


def bn_classifier(std_conv=False):
    torch.manual_seed(0)
    return wrap_module(BNNet(std_conv).eval(), normalize=lambda x: x * 2.0 - 1.0, input_size=12,
                       class_names=list("abcd"), name="bn-net")


def batch_norm_calls(gm) -> int:
    return sum((n.op == "call_function" and n.target is nn.functional.batch_norm)
               or (n.op == "call_module" and isinstance(gm.get_submodule(n.target), nn.BatchNorm2d))
               for n in gm.graph.nodes)


@pytest.fixture
def images():
    return torch.rand(4, 3, 12, 12, generator=torch.Generator().manual_seed(1))


def test_folding_keeps_the_function_and_leaves_the_users_model_alone(images):
    clf = bn_classifier()
    before = copy.deepcopy(clf.module.state_dict())
    gm = twin(clf, images)
    assert gm is not None
    assert batch_norm_calls(gm) == 1                  # bn2 stays: its conv's output is read twice
    with torch.no_grad():
        torch.testing.assert_close(gm(clf.normalize(images)), clf(images), rtol=1e-5, atol=1e-5)
    after = clf.module.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert isinstance(clf.module.bn1, nn.BatchNorm2d)


def test_gradients_ig_and_hessian_rows_go_through_the_twin_and_agree(images, monkeypatch):
    clf = bn_classifier()
    f = ScoreFn(clf, 2)
    x = images[0]
    with counting() as n:
        fused_ig = integrated_gradients(x, clf, 2, n_steps=8)
        fused_rows = hessian_rows(x, f, [0, 77, 130])
    assert n[0] > 0
    monkeypatch.setenv("HSETS_FORWARD", "torch")       # the module as given
    with counting() as n:
        plain_ig = integrated_gradients(x, clf, 2, n_steps=8)
        plain_rows = hessian_rows(x, f, [0, 77, 130])
    assert n[0] == 0
    torch.testing.assert_close(fused_ig.attribution, plain_ig.attribution, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(fused_rows, plain_rows, rtol=1e-4, atol=1e-6)
    assert plain_rows.abs().sum() > 0


def test_a_weight_standardised_conv_is_not_folded(images):
    clf = bn_classifier(std_conv=True)
    gm = twin(clf, images)
    assert gm is not None and batch_norm_calls(gm) == 2   # bn1 folded; bn2 (two readers), bn3 not
    with torch.no_grad():
        torch.testing.assert_close(gm(clf.normalize(images)), clf(images), rtol=1e-5, atol=1e-5)


def test_changed_weights_train_mode_and_float64_are_never_answered_by_an_old_twin(images):
    clf = bn_classifier()
    first = twin(clf, images)
    with torch.no_grad():
        clf.module.bn1.running_var.mul_(4.0)           # fine-tuning (or recalibration) in place
    second = twin(clf, images)
    assert second is not first
    with torch.no_grad():
        torch.testing.assert_close(second(clf.normalize(images)), clf(images), rtol=1e-5, atol=1e-5)
    clf.module.train()
    assert twin(clf, images) is None
    clf.module.eval()
    clf64 = wrap_module(BNNet().double().eval(), normalize=lambda x: x, input_size=12,
                        class_names=list("abcd"), name="bn-net-64")
    assert twin(clf64, images.double()) is None


class Untraceable(nn.Module):
    """Data-dependent control flow: torch.fx cannot trace it."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.bn = nn.BatchNorm2d(4)

    def forward(self, x):
        y = self.bn(self.conv(x))
        if y.mean() > 0:
            y = y * 2
        return y.mean(dim=(2, 3))


def test_a_model_that_cannot_be_traced_or_has_nothing_to_fold_runs_as_it_is(images):
    assert fold_batch_norm(Untraceable().eval(), images) is None
    no_bn = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.LazyLinear(2)).eval()
    no_bn(images)
    assert fold_batch_norm(no_bn, images) is None
    m = wrap_module(Untraceable().eval(), normalize=lambda x: x, input_size=12, class_names=list("abcd"),
                    name="untraceable")
    x = images.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(ScoreFn(m, 1)(x).sum(), x)
    assert g.abs().sum() > 0


def test_the_default_model_folds_every_batch_norm():
    clf = load_classifier()
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    gm = twin(clf, x)
    assert gm is not None and batch_norm_calls(gm) == 0
    with torch.no_grad():
        want = clf(x)
        torch.testing.assert_close(gm(clf.normalize(x)), want, rtol=1e-4, atol=1e-4 * float(want.abs().max()))
