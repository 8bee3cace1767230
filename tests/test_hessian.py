"""Hessian rows against float64 references on a tiny network."""
import pytest
import torch

from hsets_widgets.curvature import CurvatureSpec, curvature
from hsets_widgets.hessian import HessianRows, ZeroHessianWarning, hessian_rows
from hsets_widgets.scores import ScoreFn


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
    rows = HessianRows(f, image8, "channel", spec, batch_size=7, method=method)
    got = rows.rows(range(rows.n_features))
    torch.testing.assert_close(got, ref, rtol=1e-9, atol=1e-12)
    p = pixel_projection(image8.shape)
    prow = HessianRows(f, image8, "pixel", spec, batch_size=5, method=method)
    torch.testing.assert_close(prow.rows(range(64)), p.T @ ref @ p, rtol=1e-9, atol=1e-12)


def test_rows_match_finite_differences_of_the_gradient(tiny64, image8):
    spec = CurvatureSpec("softplus", beta=4.0)
    f = ScoreFn(tiny64, 1)

    def gradient(z):
        z = z.detach().unsqueeze(0).requires_grad_(True)
        with curvature(spec):
            (g,) = torch.autograd.grad(f(z).sum(), z)
        return g[0].flatten()

    rows = HessianRows(f, image8, "channel", spec)
    eps = 1e-5
    for j in (0, 37, 150):
        e = torch.zeros(image8.numel(), dtype=torch.float64)
        e[j] = eps
        fd = (gradient(image8 + e.view_as(image8)) - gradient(image8 - e.view_as(image8))) / (2 * eps)
        torch.testing.assert_close(rows.row(j), fd, rtol=1e-5, atol=1e-8)


def test_rows_are_symmetric(tiny64, image8):
    rows = HessianRows(ScoreFn(tiny64, 0), image8, "pixel", CurvatureSpec("softplus"))
    h = rows.rows(range(64))
    torch.testing.assert_close(h, h.T, rtol=1e-9, atol=1e-12)


def test_relu_network_without_curvature_warns_about_zero_rows(tiny64, image8):
    rows = HessianRows(ScoreFn(tiny64, 0), image8, "pixel", CurvatureSpec("none"))
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
    rows = HessianRows(ScoreFn(tiny64, 0), image8, "pixel", CurvatureSpec("softplus"), batch_size=4)
    rows.rows([1, 2, 3])
    assert rows.n_computed == 3
    rows.rows([3, 2, 1, 4])
    assert rows.n_computed == 4 and 4 in rows


def test_float64_rows_from_a_float32_model(image8):
    from conftest import tiny_classifier

    clf = tiny_classifier(torch.float32)
    f = ScoreFn(clf, 0)
    x32 = image8.float()
    r64 = HessianRows(f, x32, "pixel", CurvatureSpec("softplus"), dtype=torch.float64).row(5)
    r32 = HessianRows(f, x32, "pixel", CurvatureSpec("softplus")).row(5)
    assert r64.dtype == torch.float64 and r32.dtype == torch.float32
    torch.testing.assert_close(r32.double(), r64, rtol=1e-3, atol=1e-6)
    assert next(clf.module.parameters()).dtype == torch.float32  # user's model untouched


def test_uncached_function_matches_cache(tiny64, image8):
    f = ScoreFn(tiny64, 3)
    spec = CurvatureSpec("softplus")
    a = hessian_rows(f, image8, [0, 9, 17], "pixel", spec, batch_size=2)
    b = HessianRows(f, image8, "pixel", spec).rows([0, 9, 17])
    torch.testing.assert_close(a, b)


def test_out_of_range_feature_is_an_error(tiny64, image8):
    rows = HessianRows(ScoreFn(tiny64, 0), image8, "pixel", CurvatureSpec("softplus"))
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
