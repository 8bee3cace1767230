"""Integrated Gradients checked against Captum 0.9 itself (a test extra)."""
import pytest
import torch

from hsets_widgets.hsets.integrated_gradients import integrated_gradients

captum_attr = pytest.importorskip("captum.attr", reason="pip install captum==0.9.0 (a test extra)")

#: this project's rule -> Captum's method name (same nodes and weights)
RULES = {"left": "riemann_left", "right": "riemann_right", "midpoint": "riemann_middle",
         "gauss-legendre": "gausslegendre"}


@pytest.mark.parametrize("rule", sorted(RULES))
@pytest.mark.parametrize("baseline", ["zeros", "grey"])
def test_ig_equals_captum(tiny64, image8, rule, baseline):
    ours = integrated_gradients(image8, tiny64, target=2, baseline=baseline, n_steps=16, rule=rule)

    def forward(z):  # Captum differentiates the same normalised network
        return tiny64(z)

    ig = captum_attr.IntegratedGradients(forward)
    theirs = ig.attribute(image8[None], baselines=ours.baseline[None], target=2, n_steps=16, method=RULES[rule])
    tol = dict(rtol=1e-5, atol=1e-9) if rule == "gauss-legendre" else dict(rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(ours.attribution, theirs[0], **tol)   # Captum's Gauss nodes are float32


def test_captum_trapezoid_weights_sum_to_less_than_one(tiny64, image8):
    """The documented difference: on the same n evenly spaced nodes Captum's riemann_trapezoid
    weighs the path with (1/n) [1/2, 1, ..., 1, 1/2], which sums to (n - 1)/n, where the
    trapezoid rule here uses 1/(n - 1) and sums to 1; Captum's IG is ours times (n - 1)/n."""
    n = 16
    ours = integrated_gradients(image8, tiny64, target=1, n_steps=n, rule="trapezoid")
    ig = captum_attr.IntegratedGradients(lambda z: tiny64(z))
    theirs = ig.attribute(image8[None], baselines=ours.baseline[None], target=1, n_steps=n,
                          method="riemann_trapezoid")
    torch.testing.assert_close(theirs[0], ours.attribution * (n - 1) / n, rtol=1e-5, atol=1e-9)
