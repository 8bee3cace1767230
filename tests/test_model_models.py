"""Models and checkpoints (model/models.py): a checkpoint that does not fit or cannot be read,
the default model's checkpoint, and models refused before the work (one output, NaN or
infinite scores, training mode)."""
import pytest
import torch
from torch import nn

from hsets_widgets.hsets.explain import Explainer, explain
from hsets_widgets.model.models import ModelError, load_checkpoint, load_classifier, wrap_module

pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ---- checkpoints --------------------------------------------------------------------------------
@pytest.mark.parametrize("content", [b"hello, this is a text file\n", b"\x80\x02}q\x00(X\x01\x00\x00\x00aq\x01"
                                     b"cos\nsystem\nq\x02X\x02\x00\x00\x00lsq\x03\x85q\x04Rq\x05u."])
def test_bad_checkpoints_never_advise_weights_only_false(tmp_path, content):
    path = tmp_path / "ckpt.pth"
    path.write_bytes(content)
    with pytest.raises(ModelError) as err:
        load_checkpoint(torch.nn.Linear(2, 2), path)
    assert "weights_only" not in str(err.value) and str(path) in str(err.value)


def test_wrong_architecture_checkpoint(tmp_path):
    torch.save(torch.nn.Linear(3, 3).state_dict(), tmp_path / "lin.pth")
    with pytest.raises(ModelError, match="does not fit"):
        load_checkpoint(torch.nn.Linear(2, 2), tmp_path / "lin.pth")


def test_checkpoint_is_loaded_into_the_default_model(tmp_path):
    stock = load_classifier(None)
    state = stock.module.state_dict()
    bias = next(k for k in state if k.endswith("bias") and state[k].numel() == 1000)
    state[bias] = state[bias] + 3.0
    torch.save(state, tmp_path / "tuned.pth")
    tuned = load_classifier(None, checkpoint=tmp_path / "tuned.pth")
    assert torch.equal(tuned.module.state_dict()[bias], state[bias])
    torch.save(nn.Linear(2, 2).state_dict(), tmp_path / "other.pth")
    with pytest.raises(ModelError, match="does not fit.*--model"):
        load_classifier(None, checkpoint=tmp_path / "other.pth")
    with pytest.raises(ModelError, match="checkpoint"):
        load_classifier(nn.Linear(2, 2), checkpoint=tmp_path / "other.pth")


# ---- models refused before the work -------------------------------------------------------------
def test_one_output_model_is_refused(photo48):
    single = wrap_module(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 48 * 48, 1)),
                         normalize=torch.nn.Identity(), input_size=48)
    with pytest.raises(ModelError, match="at least 2 classes"):
        Explainer(photo48, single, segmenter="slic")


class Poisoned(nn.Module):
    def __init__(self, value):
        super().__init__()
        self.lin = nn.Linear(3, 4)
        self.value = value

    def forward(self, x):
        out = self.lin(x.mean((2, 3)))
        return out + torch.tensor([0.0, self.value, 0.0, 0.0])


@pytest.mark.parametrize("value, says", [(float("nan"), "NaN"), (float("inf"), "infinite")])
def test_non_finite_scores_are_refused_before_the_work(photo48, value, says):
    clf = wrap_module(Poisoned(value), normalize=lambda x: x, input_size=48)
    with pytest.raises(ModelError, match=says) as err:
        explain(photo48, clf, segmenter="slic", n_steps=4, nu=4, n_sets=1)
    assert "score" not in str(err.value).split("model")[0]


def test_model_back_in_training_mode_is_refused_unchanged(photo48):
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                        nn.Linear(4, 3))
    clf = wrap_module(net, normalize=lambda x: x, input_size=48)
    net.train()
    stats = net[1].running_mean.clone()
    with pytest.raises(ModelError, match=r"training mode.*\.eval\(\)"):
        explain(photo48, clf, segmenter="slic", n_steps=4, nu=4, n_sets=1)
    assert torch.equal(net[1].running_mean, stats) and net[1].num_batches_tracked == 0
