"""Bad images and bad models get clear errors that name the problem and the fix."""
import numpy as np
import pytest
import torch
from PIL import Image

from hsets_widgets.model.images import ImageError, check_image_tensor, load_image, resize_center_crop
from hsets_widgets.model.models import ModelError, load_checkpoint, load_classifier, wrap_module
from hsets_widgets.model.scores import resolve_target


def test_paths_pil_arrays_and_tensors_agree(tmp_path):
    rgb = (np.random.default_rng(0).random((20, 30, 3)) * 255).astype(np.uint8)
    Image.fromarray(rgb).save(tmp_path / "a.png")
    a = load_image(tmp_path / "a.png")
    b = load_image(Image.fromarray(rgb))
    c = load_image(rgb)
    d = load_image(torch.from_numpy(rgb.transpose(2, 0, 1).copy()))
    e = load_image(rgb.astype(np.float32) / 255.0)
    for other in (b, c, d, e):
        np.testing.assert_allclose(a, other, atol=1e-6)
    assert a.shape == (20, 30, 3) and a.dtype == np.float32 and a.max() <= 1.0


def test_grayscale_and_rgba_are_converted_with_a_notice(tmp_path):
    gray = np.full((16, 16), 128, np.uint8)
    with pytest.warns(UserWarning, match="grayscale"):
        g = load_image(gray)
    assert g.shape == (16, 16, 3)
    rgba = np.zeros((16, 16, 4), np.uint8)
    rgba[..., 0] = 255
    rgba[..., 3] = 0  # fully transparent -> white
    with pytest.warns(UserWarning, match="alpha"):
        r = load_image(rgba)
    np.testing.assert_allclose(r, 1.0)
    Image.fromarray(rgba).save(tmp_path / "t.png")
    with pytest.warns(UserWarning, match="alpha"):
        load_image(tmp_path / "t.png")


@pytest.mark.parametrize("bad, match", [
    (np.zeros((0, 5, 3)), "empty"),
    (np.zeros((10, 10, 5)), "5 channels"),
    (np.zeros((2, 10, 10, 3)), "batch of 2"),
    (np.zeros((4, 4, 3)), "too small"),
    (np.full((10, 10, 3), np.nan, np.float32), "NaN"),
    (np.full((10, 10, 3), -3.0, np.float32), r"expected \[0, 1\]"),
    (np.zeros((10,)), "must have shape"),
])
def test_bad_arrays(bad, match):
    with pytest.raises(ImageError, match=match):
        load_image(bad)


def test_huge_images_are_refused(monkeypatch):
    import hsets_widgets.model.images as images

    monkeypatch.setattr(images, "MAX_PIXELS", 1000)
    with pytest.raises(ImageError, match="too large"):
        load_image(np.zeros((40, 40, 3), np.uint8))


def test_bad_paths_and_types(tmp_path):
    with pytest.raises(ImageError, match="not found"):
        load_image(tmp_path / "missing.jpg")
    with pytest.raises(ImageError, match="directory"):
        load_image(tmp_path)
    (tmp_path / "x.jpg").write_text("not an image")
    with pytest.raises(ImageError, match="cannot read"):
        load_image(tmp_path / "x.jpg")
    with pytest.raises(ImageError, match="type dict"):
        load_image({})


def test_engine_tensor_check():
    with pytest.raises(ImageError, match=r"\(3, H, W\)"):
        check_image_tensor(torch.zeros(4, 8, 8))
    with pytest.raises(ImageError, match="NaN"):
        check_image_tensor(torch.full((3, 8, 8), float("nan")))


def test_resize_center_crop_is_square():
    out = resize_center_crop(np.random.default_rng(0).random((60, 90, 3)).astype(np.float32), 32)
    assert out.shape == (32, 32, 3) and 0 <= out.min() and out.max() <= 1


def test_checkpoint_errors(tmp_path):
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3))
    with pytest.raises(ModelError, match="not found"):
        load_checkpoint(net, tmp_path / "none.pt")
    (tmp_path / "garbage.pt").write_bytes(b"\x00garbage")
    with pytest.raises(ModelError, match="not a torch checkpoint file"):
        load_checkpoint(net, tmp_path / "garbage.pt")
    torch.save(net.state_dict(), tmp_path / "whole.pt")
    whole = (tmp_path / "whole.pt").read_bytes()
    (tmp_path / "truncated.pt").write_bytes(whole[: len(whole) // 2])
    with pytest.raises(ModelError, match="could not be read"):
        load_checkpoint(net, tmp_path / "truncated.pt")
    torch.save({"weight": torch.zeros(2, 2)}, tmp_path / "other.pt")
    with pytest.raises(ModelError, match="does not fit"):
        load_checkpoint(net, tmp_path / "other.pt")
    good = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3))
    torch.save({"state_dict": {"module." + k: v for k, v in good.state_dict().items()}}, tmp_path / "ok.pt")
    load_checkpoint(net, tmp_path / "ok.pt")
    torch.testing.assert_close(net[1].weight, good[1].weight)


def test_torchvision_checkpoint_offline(tmp_path):
    import torchvision

    torch.save(torchvision.models.resnet18(weights=None).state_dict(), tmp_path / "r18.pt")
    clf = load_classifier("resnet18", checkpoint=tmp_path / "r18.pt")
    assert clf.name == "resnet18" and len(clf.class_names) == 1000
    with pytest.raises(ModelError, match="does not fit"):
        load_classifier("resnet50", checkpoint=tmp_path / "r18.pt")
    with pytest.raises(ModelError, match="unknown torchvision model"):
        load_classifier("resnet9000")


def test_models_without_class_scores_are_refused():
    class Pair(torch.nn.Module):
        def forward(self, x):
            return x.mean(), x.sum()

    class Map(torch.nn.Module):
        def forward(self, x):
            return x

    x = torch.rand(3, 8, 8)
    with pytest.raises(ModelError, match="tuple"):
        resolve_target(x, wrap_module(Pair()))
    with pytest.raises(ModelError, match=r"\(B, classes\)"):
        resolve_target(x, wrap_module(Map()))


def test_target_out_of_range(small32, photo48):
    from hsets_widgets.model.images import to_tensor

    with pytest.raises(ModelError, match="out of range"):
        resolve_target(to_tensor(photo48), small32, 99)


def test_default_model_recognises_the_bundled_cat():
    from hsets_widgets.model.images import to_tensor

    clf = load_classifier()
    top = clf.predict(to_tensor(resize_center_crop(load_image("chelsea"), 224)), top=3)
    assert {i for i, _, _ in top} & {281, 282, 283, 284, 285}  # tabby / tiger / Persian / Siamese / Egyptian cat
    assert "cat" in top[0][1]


def test_sixteen_bit_and_float_files_keep_their_range(tmp_path):
    from PIL import Image

    ramp = np.linspace(0.0, 1.0, 64 * 64).reshape(64, 64)
    Image.fromarray((ramp * 65535).astype(np.uint16)).save(tmp_path / "g16.png")
    Image.fromarray((ramp * 65535).astype(np.int32)).save(tmp_path / "g32.tif")      # mode I
    Image.fromarray(ramp.astype(np.float32)).save(tmp_path / "gf.tif")               # mode F
    for name in ("g16.png", "g32.tif", "gf.tif"):
        with pytest.warns(UserWarning, match="grayscale"):
            a = load_image(tmp_path / name)
        assert a.shape == (64, 64, 3)
        np.testing.assert_allclose(a[..., 0], ramp, atol=1e-4)   # not clipped to white
    assert load_image(np.full((16, 16, 3), 65535, np.uint16)).max() == 1.0
    assert load_image(np.full((16, 16, 3), 255, np.uint16)).max() == pytest.approx(255 / 65535)


def test_animated_gif_says_which_frame_is_used(tmp_path):
    from PIL import Image

    frames = [Image.new("RGB", (32, 32), c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    frames[0].save(tmp_path / "a.gif", save_all=True, append_images=frames[1:])
    with pytest.warns(UserWarning, match="3 frames.*first frame"):
        a = load_image(tmp_path / "a.gif")
    assert a[..., 0].mean() > 0.9 and a[..., 1].mean() < 0.1


def test_huge_image_files_are_refused_before_decoding(tmp_path):
    from PIL import Image

    Image.new("1", (20000, 20000)).save(tmp_path / "huge.png")    # a small file of 400 megapixels
    with pytest.raises(ImageError, match="too large.*20000x20000.*downscale"):
        load_image(tmp_path / "huge.png")
