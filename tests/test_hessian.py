"""Hessian rows against float64 references on a tiny network."""
import pytest
import torch

from hsets_widgets.hsets.curvature import CurvatureSpec, curvature
from hsets_widgets.hsets.hessian import HessianRows, ZeroHessianWarning, hessian_rows
from hsets_widgets.model.scores import ScoreFn


def full_hessian(f, x, spec):
    with curvature(spec):
        return torch.autograd.functional.hessian(lambda z: f(z.view(1, *x.shape)).sum(), x.flatten())


def pixel_projection(shape):
    c, h, w = shape
    p = torch.zeros(c * h * w, h * w, dtype=torch.float64)
    for ch in range(c):
        p[ch * h * w + torch.arange(h * w), torch.arange(h * w)] = 1.0
    return p


@pytest.mark.parametrize("method", ["forward-over-reverse", "stacked", "double-backward"])
@pytest.mark.parametrize("spec", [CurvatureSpec("softplus", beta=5.0), CurvatureSpec("surrogate", tau=1e-2)])
def test_batched_rows_equal_autograd_hessian(tiny64, image8, method, spec):
    f = ScoreFn(tiny64, 2)
    ref = full_hessian(f, image8, spec)
    assert ref.abs().max() > 1e-6  # the reference itself is not trivial
    rows = HessianRows(image8, f, "channel", spec, batch_size=7, method=method)
    got = rows.rows(range(rows.n_features))
    torch.testing.assert_close(got, ref, rtol=1e-9, atol=1e-12)
    p = pixel_projection(image8.shape)
    prow = HessianRows(image8, f, "pixel", spec, batch_size=5, method=method)
    torch.testing.assert_close(prow.rows(range(64)), p.T @ ref @ p, rtol=1e-9, atol=1e-12)


def test_rows_match_finite_differences_of_the_gradient(tiny64, image8):
    spec = CurvatureSpec("softplus", beta=4.0)
    f = ScoreFn(tiny64, 1)

    def gradient(z):
        z = z.detach().unsqueeze(0).requires_grad_(True)
        with curvature(spec):
            (g,) = torch.autograd.grad(f(z).sum(), z)
        return g[0].flatten()

    rows = HessianRows(image8, f, "channel", spec)
    eps = 1e-5
    for j in (0, 37, 150):
        e = torch.zeros(image8.numel(), dtype=torch.float64)
        e[j] = eps
        fd = (gradient(image8 + e.view_as(image8)) - gradient(image8 - e.view_as(image8))) / (2 * eps)
        torch.testing.assert_close(rows.row(j), fd, rtol=1e-5, atol=1e-8)


def test_rows_are_symmetric(tiny64, image8):
    rows = HessianRows(image8, ScoreFn(tiny64, 0), "pixel", CurvatureSpec("softplus"))
    h = rows.rows(range(64))
    torch.testing.assert_close(h, h.T, rtol=1e-9, atol=1e-12)


def test_relu_network_without_curvature_warns_about_zero_rows(tiny64, image8):
    rows = HessianRows(image8, ScoreFn(tiny64, 0), "pixel", CurvatureSpec("none"))
    with pytest.warns(ZeroHessianWarning, match="curvature='softplus'"):
        r = rows.row(3)
    assert torch.count_nonzero(r) == 0


def test_functional_relu_and_modules_are_both_smoothed(tiny64, image8):
    with curvature("softplus") as mode:
        tiny64(image8.unsqueeze(0))
    assert mode.calls == 2  # nn.ReLU module + F.relu in forward


def test_curvature_context_restores_the_model(tiny64, image8):
    before = tiny64(image8.unsqueeze(0))
    with curvature("softplus", beta=1.0):
        inside = tiny64(image8.unsqueeze(0))
    after = tiny64(image8.unsqueeze(0))
    assert torch.equal(before, after)
    assert not torch.allclose(before, inside)


def test_surrogate_keeps_forward_values_exact(tiny64, image8):
    plain = tiny64(image8.unsqueeze(0))
    with curvature("surrogate", tau=1e-3):
        sur = tiny64(image8.unsqueeze(0))
    torch.testing.assert_close(plain, sur, rtol=0, atol=1e-12)


def test_relu6_is_clipped_smoothly():
    x = torch.linspace(-3, 9, 25, dtype=torch.float64)
    with curvature("softplus", beta=50.0):
        y = torch.nn.ReLU6()(x)
    torch.testing.assert_close(y, torch.nn.functional.relu6(x), atol=0.02, rtol=0)
    assert y.max() <= 6.0 + 1e-9


def test_cache_never_recomputes(tiny64, image8):
    rows = HessianRows(image8, ScoreFn(tiny64, 0), "pixel", CurvatureSpec("softplus"), batch_size=4)
    rows.rows([1, 2, 3])
    assert rows.n_computed == 3
    rows.rows([3, 2, 1, 4])
    assert rows.n_computed == 4 and 4 in rows


def test_float64_rows_from_a_float32_model(image8):
    from conftest import tiny_classifier

    clf = tiny_classifier(torch.float32)
    f = ScoreFn(clf, 0)
    x32 = image8.float()
    r64 = HessianRows(x32, f, "pixel", CurvatureSpec("softplus"), dtype=torch.float64).row(5)
    r32 = HessianRows(x32, f, "pixel", CurvatureSpec("softplus")).row(5)
    assert r64.dtype == torch.float64 and r32.dtype == torch.float32
    torch.testing.assert_close(r32.double(), r64, rtol=1e-3, atol=1e-6)
    assert next(clf.module.parameters()).dtype == torch.float32  # user's model untouched


def test_one_off_rows_are_the_float64_autograd_hessian(tiny64, image8):
    f = ScoreFn(tiny64, 3)
    spec = CurvatureSpec("softplus")
    got = hessian_rows(image8, f, [0, 9, 17], "channel", spec, batch_size=2)
    with curvature(spec):
        full = torch.autograd.functional.hessian(lambda z: f(z.reshape(1, *image8.shape))[0], image8.flatten())
    torch.testing.assert_close(got, full[[0, 9, 17]], rtol=1e-7, atol=1e-10)
    assert full[[0, 9, 17]].abs().max() > 0


def test_out_of_range_feature_is_an_error(tiny64, image8):
    rows = HessianRows(image8, ScoreFn(tiny64, 0), "pixel", CurvatureSpec("softplus"))
    with pytest.raises(IndexError, match="out of range"):
        rows.row(64)


def test_mobilenet_v3_hard_activations_are_smoothed():
    x = torch.linspace(-5, 5, 41, dtype=torch.float64)
    with curvature("softplus", beta=50.0) as mode:
        hs = torch.nn.Hardswish()(x)
        hg = torch.nn.Hardsigmoid()(x)
    assert mode.calls == 2
    torch.testing.assert_close(hs, torch.nn.functional.hardswish(x), atol=0.03, rtol=0)
    torch.testing.assert_close(hg, torch.nn.functional.hardsigmoid(x), atol=0.01, rtol=0)
    xg = x.clone().requires_grad_(True)
    with curvature("softplus", beta=10.0):
        (g,) = torch.autograd.grad(torch.nn.Hardsigmoid()(xg).sum(), xg, create_graph=True)
        (h,) = torch.autograd.grad(g.sum(), xg)
    assert h.abs().max() > 0.1  # the piecewise-linear gate now has curvature


ACTIVATIONS = {
    "relu": torch.relu,
    "relu6": torch.nn.functional.relu6,
    "hardtanh(-1, 2)": lambda x: torch.nn.functional.hardtanh(x, -1.0, 2.0),
    "hardsigmoid": torch.nn.functional.hardsigmoid,
    "hardswish": torch.nn.functional.hardswish,
}


@pytest.mark.parametrize("spec", [CurvatureSpec("softplus", beta=3.0), CurvatureSpec("surrogate", tau=0.1)])
@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_smooth_activations_have_exact_first_and_second_derivatives(name, spec):
    """The fused activations against finite differences, in every differentiation mode."""
    if spec.kind == "surrogate" and name == "hardswish":
        pytest.skip("x * gate(x) mixes the surrogate's exact value with its replaced slope by design")
    fn = ACTIVATIONS[name]
    x = torch.linspace(-4.5, 7.5, 23, dtype=torch.float64).requires_grad_(True)
    def gradient(z):
        return torch.autograd.grad(fn(z).sum(), z, create_graph=True)[0]

    with curvature(spec) as mode:
        if spec.kind == "softplus":  # the surrogate's gradient is by design not that of its value
            assert torch.autograd.gradcheck(fn, (x,), check_forward_ad=True)
            assert torch.autograd.gradgradcheck(fn, (x,), check_fwd_over_rev=True)
        # second derivatives == finite differences of the gradient
        assert torch.autograd.gradcheck(gradient, (x,))
        # forward-over-reverse under vmap (how Hessian rows are computed) == double backward
        t = torch.randn(3, x.numel(), dtype=torch.float64, generator=torch.Generator().manual_seed(0))
        hv = torch.func.vmap(lambda v: torch.func.jvp(torch.func.grad(lambda z: fn(z).sum()),
                                                        (x.detach(),), (v,))[1])(t)
        (g,) = torch.autograd.grad(fn(x).sum(), x, create_graph=True)
        ref = torch.stack([torch.autograd.grad(g, x, v, retain_graph=True)[0] for v in t])
    torch.testing.assert_close(hv, ref, rtol=1e-12, atol=1e-12)
    assert mode.calls > 0 and ref.abs().max() > 0  # replaced, and curved


def test_softplus_clip_values_follow_the_formula():
    x = torch.linspace(-4.0, 9.0, 27, dtype=torch.float64)
    beta = 2.5

    def sp(u):
        return torch.log1p(torch.exp(beta * u)) / beta

    with curvature("softplus", beta=beta):
        torch.testing.assert_close(torch.relu(x), sp(x))
        torch.testing.assert_close(torch.nn.functional.relu6(x), sp(x) - sp(x - 6))
        torch.testing.assert_close(torch.nn.functional.hardtanh(x, -1.0, 2.0), -1 + sp(x + 1) - sp(x - 2))
        torch.testing.assert_close(torch.nn.functional.hardswish(x), x * (sp(x + 3) - sp(x - 3)) / 6)


def test_cpu_batch_size_follows_available_memory(tiny64, image8, monkeypatch):
    import hsets_widgets.hsets.hessian as hessian
    from hsets_widgets.hsets.hessian import (
        CPU_MAX_BATCH,
        FIXED_FACTOR,
        PER_ROW_FACTOR,
        cpu_batch_size,
        saved_activation_bytes,
    )

    f = ScoreFn(tiny64, 0)
    act = saved_activation_bytes(image8, f)
    assert act > image8.numel() * 8  # at least the input and the first feature maps
    assert cpu_batch_size(image8, f, available=10 ** 12) == CPU_MAX_BATCH
    assert cpu_batch_size(image8, f, available=act) == 1  # tight memory: one row per pass
    mid = cpu_batch_size(image8, f, available=int(2 * (4.0 + 2.5 * 3) * act))
    assert 1 < mid < CPU_MAX_BATCH
    # "auto" reads the machine's available memory: where the bounds allow fewer than the most
    # rows (here three), the first pass has one row, measured, and the rest follow the measurement
    three = int(2 * (FIXED_FACTOR * act + 3.5 * PER_ROW_FACTOR * act))
    monkeypatch.setattr(hessian, "available_memory", lambda budget=None: three)
    rows = HessianRows(image8, f, "pixel", CurvatureSpec("softplus"))  # batch_size="auto"
    assert rows.batch_size == 1
    rows.rows(range(12))
    assert rows.n_passes >= 2 and rows.method == "forward-over-reverse"


@pytest.mark.parametrize("arch", ["resnet18", "mobilenet_v3_small", "densenet121"])
def test_vmapped_rows_match_double_backward_on_real_architectures(arch):
    """BatchNorm (eval, as a multiply-add), max-pooling, hard activations and functional
    ReLUs under vmap, against plain double backward through the unmodified network."""
    from hsets_widgets.model.models import torchvision_classifier

    torch.manual_seed(0)
    clf = torchvision_classifier(arch, weights=None)
    clf.module.double()
    x = torch.rand(3, 40, 40, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    f = ScoreFn(clf, 3)
    idx = [5, 410, 799, 1200]
    spec = CurvatureSpec("softplus", beta=10.0)
    fast = HessianRows(x, f, "pixel", spec, batch_size=4).rows(idx)
    # reference: one double-backward call per row with the network's own (native) batch norm
    z = x.unsqueeze(0).requires_grad_(True)
    with curvature(spec):
        (g,) = torch.autograd.grad(f(z).sum(), z, create_graph=True)
        gp = g[0].sum(0).flatten()
        ref = torch.stack([torch.autograd.grad(gp[j], z, retain_graph=True)[0][0].sum(0).flatten() for j in idx])
    assert ref.abs().max() > 0
    torch.testing.assert_close(fast, ref, rtol=1e-9, atol=1e-12 * float(ref.abs().max()))


def test_affine_batch_norm_equals_eval_batch_norm_and_leaves_training_alone():
    from hsets_widgets.hsets.hessian import affine_batch_norm

    torch.manual_seed(0)
    bn = torch.nn.BatchNorm2d(5).double()
    bn.running_mean.uniform_(-1, 1)
    bn.running_var.uniform_(0.5, 2)
    bn.weight.data.uniform_(0.5, 1.5)
    bn.bias.data.uniform_(-1, 1)
    x = torch.randn(2, 5, 4, 4, dtype=torch.float64)
    bn.eval()
    calls = []
    orig = torch.addcmul

    def spy(*a, **k):  # the multiply-add path must really be taken, not the native op
        calls.append(1)
        return orig(*a, **k)

    torch.addcmul = spy
    try:
        with affine_batch_norm():
            y = bn(x)
    finally:
        torch.addcmul = orig
    assert len(calls) == 1
    torch.testing.assert_close(y, bn(x), rtol=1e-12, atol=1e-12)
    bn.train()
    before = bn.running_mean.clone()
    with affine_batch_norm():
        y = bn(x)
    assert not torch.equal(bn.running_mean, before)  # batch statistics used and tracked
    torch.testing.assert_close(y.mean((0, 2, 3)), bn.bias.data, atol=1e-9, rtol=0)


def test_dropping_the_relu6_clip_is_the_authors_module_swap():
    """keep_clip=False on a ReLU6 network gives the rows of the same network with every
    nn.ReLU6 swapped for nn.ReLU (what the authors' code does); keeping the clip does not."""
    import copy

    from torch import nn

    from hsets_widgets.model.models import wrap_module

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU6(), nn.Conv2d(6, 6, 3, padding=1), nn.ReLU6(),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 4)).double()
    with torch.no_grad():
        net[0].weight.mul_(20.0)         # pre-activations well above 6, so the clip matters
    swapped = copy.deepcopy(net)
    for i, m in enumerate(swapped):
        if isinstance(m, nn.ReLU6):
            swapped[i] = nn.ReLU()
    x = torch.rand(3, 8, 8, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    assert float(net[0](x[None]).max()) > 6.0
    clf, clf_swapped = (wrap_module(n, normalize=nn.Identity(), input_size=8) for n in (net, swapped))
    idx = [0, 9, 27, 40]
    drop = HessianRows(x, ScoreFn(clf, 1), "pixel", CurvatureSpec("surrogate", keep_clip=False)).rows(idx)
    theirs = HessianRows(x, ScoreFn(clf_swapped, 1), "pixel", CurvatureSpec("surrogate")).rows(idx)
    keep = HessianRows(x, ScoreFn(clf, 1), "pixel", CurvatureSpec("surrogate")).rows(idx)
    torch.testing.assert_close(drop, theirs, rtol=1e-10, atol=1e-12)
    assert float((keep - theirs).abs().max()) > 1e-3 * float(theirs.abs().max())
