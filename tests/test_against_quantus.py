"""ROAD and sparsity checked against Quantus 0.6 itself (a test extra), where the definitions agree.

Differences, each asserted below or in docs/evaluation.md:
* Quantus 0.6's ROAD ranks the map broadcast to the image's channels, so on a 3-channel image
  it asks the imputation for pixels that do not exist (IndexError); it runs on 1-channel
  images, where the two implementations must give the same curve.
* Quantus' imputation noise is unseeded; with the noise off the imputed images agree.
* Quantus has MoRF only, scores accuracy only, and takes percentages in percent.
"""
import numpy as np
import pytest
import torch
from torch import nn

from hsets_widgets import gini, noisy_linear_impute, road
from hsets_widgets.model.models import wrap_module

quantus = pytest.importorskip("quantus", reason="pip install quantus==0.6.0 (a test extra)")

pytestmark = [pytest.mark.usefixtures("one_torch_thread"),
              pytest.mark.filterwarnings("ignore::UserWarning"),
              pytest.mark.filterwarnings("ignore::DeprecationWarning")]


def grey_block_model(size=16):
    """A 1-channel linear classifier looking at a 6x6 block (class 0 iff it is bright)."""
    lin = nn.Linear(size * size, 2)
    with torch.no_grad():
        w = torch.zeros(size, size)
        w[3:9, 4:10] = 1.0 / 36
        lin.weight.zero_()
        lin.weight[0] = 20 * w.flatten()
        lin.bias.copy_(torch.tensor([-10.0, 0.0]))
    return wrap_module(nn.Sequential(nn.Flatten(), lin), normalize=nn.Identity(), input_size=size,
                       class_names=["bright", "dark"], name="grey-block")


def test_noisy_linear_imputation_equals_quantus_with_the_noise_off():
    from quantus.functions.perturb_func import noisy_linear_imputation

    rng = np.random.default_rng(0)
    x = rng.random((3, 20, 24))
    removed = rng.random((20, 24)) < 0.35
    removed[0, :] = True                        # a whole border row, corners included
    ours = noisy_linear_impute(x, removed, noise=0.0)
    theirs = noisy_linear_imputation(x.copy(), np.flatnonzero(removed), noise=0.0)
    np.testing.assert_allclose(ours, theirs, atol=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_road_morf_curve_equals_quantus_on_single_channel_images(seed):
    clf = grey_block_model()
    g = torch.Generator().manual_seed(seed)
    x = 0.2 * torch.rand(1, 16, 16, generator=g)
    x[:, 3:9, 4:10] = 0.9 + 0.1 * torch.rand(1, 6, 6, generator=g)
    target = int(clf(x[None]).argmax())
    amap = np.random.default_rng(seed).random((16, 16))     # no ties: both rankings agree
    amap[3:9, 4:10] += np.linspace(0.0, 1.0, 36).reshape(6, 6)
    pct = [2, 5, 10, 20, 30, 50, 70]
    metric = quantus.ROAD(percentages=pct, noise=0.0, display_progressbar=False, disable_warnings=True)
    theirs = metric(model=clf.module.eval(), x_batch=x[None].numpy(), y_batch=np.array([target]),
                    a_batch=amap[None, None].astype(np.float32), device="cpu")
    ours = road(x, clf, amap, [p / 100 for p in pct], orders=("morf",), noise=0.0, tie_break=0.0)
    assert [theirs[p] for p in pct] == ours.morf.accuracy.tolist()
    assert ours.morf.accuracy.min() == 0.0 and ours.morf.accuracy.max() == 1.0   # the curve moves


def test_quantus_road_cannot_index_three_channel_images():
    """The documented difference: Quantus 0.6 ranks C*H*W entries but imputes H*W pixels."""
    lin = nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 2))
    x = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    a = np.random.default_rng(0).random((1, 1, 16, 16)).astype(np.float32)
    metric = quantus.ROAD(percentages=[30, 60], noise=0.0, display_progressbar=False, disable_warnings=True)
    with pytest.raises(IndexError):
        metric(model=lin.eval(), x_batch=x.numpy(), y_batch=np.array([0]), a_batch=a, device="cpu")
    clf = wrap_module(lin, normalize=nn.Identity(), input_size=16, class_names=["a", "b"])
    assert road(x[0], clf, a[0, 0], [0.3, 0.6]).morf.accuracy.shape == (2,)   # ours ranks pixels


@pytest.mark.parametrize("kind", ["dense", "sparse", "signed"])
def test_gini_equals_quantus_sparseness(kind):
    rng = np.random.default_rng(3)
    a = rng.random((2, 1, 32, 32))
    if kind == "sparse":
        a[a < 0.95] = 0.0
    elif kind == "signed":
        a = rng.standard_normal((2, 1, 32, 32)) ** 3
    x = rng.random((2, 3, 32, 32)).astype(np.float32)
    metric = quantus.Sparseness(disable_warnings=True, display_progressbar=False)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 2)).eval()
    theirs = metric(model=model, x_batch=x, y_batch=np.array([0, 1]), a_batch=a, device="cpu")
    ours = [gini(m[0]) for m in a]
    np.testing.assert_allclose(ours, theirs, rtol=2e-5)   # Quantus computes in float32
