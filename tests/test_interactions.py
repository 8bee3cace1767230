"""Interactions, measured: exact game analysis, shapiq's indices, planted ground truth."""
import numpy as np
import pytest
import torch

from hsets_widgets import Explainer
from hsets_widgets.hsets.games import coalition_matrix, moebius, nonadditive_share, pair_interactions
from hsets_widgets.hsets.seeds import feature_pixels
from hsets_widgets.metrics.interactions import (
    PartsGame,
    analyse_game,
    interaction_test,
    moved_controls,
    nearest_control,
    split_parts,
)
from hsets_widgets.model.planted import planted_classifier, scene

# planted models are not networks: their non-interacting rows are exactly zero by design
pytestmark = pytest.mark.filterwarnings("ignore::hsets_widgets.hsets.hessian.ZeroHessianWarning")


def _game(n=5, seed=1):
    w = np.random.default_rng(seed).normal(size=n)
    return lambda c: c @ w + 2 * c[:, 0] * c[:, 1] - 1.5 * c[:, 1] * c[:, 2] * c[:, 3] + 0.7 * c[:, 4] * c[:, 0]


def test_dividends_add_up_to_the_whole_effect_and_rebuild_the_game():
    f = _game()
    c = coalition_matrix(5).astype(float)
    v = f(c)
    m = moebius(v)
    assert m[1:].sum() == pytest.approx(v[-1] - v[0])
    # v(T) = sum of the dividends of T's subsets, for every T
    subset = (np.arange(32)[:, None] & np.arange(32)[None, :]) == np.arange(32)[None, :]
    np.testing.assert_allclose(subset @ m, v, atol=1e-12)


def test_a_game_without_interaction_has_none():
    w = np.array([0.3, -1.0, 2.0, 0.5])
    v = coalition_matrix(4) @ w + 7.0
    m = moebius(v)
    sizes = coalition_matrix(4).sum(1)
    assert np.abs(m[sizes >= 2]).max() < 1e-12
    assert np.abs(pair_interactions(m, "sii")).max() < 1e-12
    assert np.abs(pair_interactions(m, "bii")).max() < 1e-12
    assert nonadditive_share(v) < 1e-20


def test_indices_equal_shapiqs_exact_ones():
    shapiq = pytest.importorskip("shapiq")
    f = _game()
    c = coalition_matrix(5).astype(float)
    m = moebius(f(c))
    exact = shapiq.ExactComputer(game=lambda coal: f(np.asarray(coal, float)), n_players=5)
    theirs = exact("Moebius", order=5).dict_values
    for players, value in theirs.items():
        if players:
            assert m[sum(1 << i for i in players)] == pytest.approx(value, abs=1e-9)
    for ours, name in (("sii", "SII"), ("bii", "BII")):
        pairs = pair_interactions(m, ours)
        d = exact(name, order=2).dict_values
        for i in range(5):
            for j in range(i + 1, 5):
                assert pairs[i, j] == pytest.approx(d[(i, j)], abs=1e-9)


def test_parts_are_compact_cover_the_set_and_start_at_the_seed():
    yy, xx = np.mgrid[10:30, 5:45]
    pixels = (yy * 64 + xx).ravel()
    pixels = np.concatenate([[20 * 64 + 40], pixels[pixels != 20 * 64 + 40]])
    parts = split_parts(pixels, (64, 64), 6, seed=0)
    assert len(parts) == 6 and sorted(np.concatenate(parts).tolist()) == sorted(pixels.tolist())
    assert 20 * 64 + 40 in parts[0]
    assert split_parts(pixels[:3], (64, 64), 6) and len(split_parts(pixels[:3], (64, 64), 6)) == 3
    with pytest.raises(ValueError, match="n_parts must be a whole number from 1 to 16"):
        split_parts(pixels, (64, 64), 40)


@pytest.fixture(scope="module")
def planted():
    sc = scene(64)
    clf = planted_classifier(sc["terms"], 64)
    img = sc["image"]
    labels = np.ones((64, 64), np.int64)
    return sc, clf, img, labels


def _grow(planted, role, floor):
    sc, clf, img, labels = planted
    ex = Explainer(img, model=clf, segmenter=labels, target=0, device="cpu", row_floor=floor,
                   within_mask=False, dtype="float64")
    patch = sc[role][0]
    seed = ex.seed_at(patch.y0 + 3, patch.x0 + 3)
    return ex, seed, patch, ex.grow(seed)


@pytest.mark.parametrize("role", ["pair", "triple", "inner"])
def test_growth_with_a_floor_recovers_the_planted_partners_and_nothing_else(planted, role):
    _, clf, _, _ = planted
    _, seed, patch, grown = _grow(planted, role, floor=0.01)
    want = set().union(*(q.pixels(64).tolist() for q in clf.module.interacting(patch) | {patch}))
    got = set(grown.members.tolist())
    assert len(got & want) / len(want) >= 0.9          # recall
    assert len(got & want) / len(got) >= 0.9           # precision
    assert grown.stopped == "exhausted"


def test_without_a_floor_the_top_k_rule_pads_the_set(planted):
    _, clf, _, _ = planted
    _, _, patch, grown = _grow(planted, "pair", floor=0.0)
    want = set().union(*(q.pixels(64).tolist() for q in clf.module.interacting(patch) | {patch}))
    assert len(want & set(grown.members.tolist())) / len(grown) < 0.5


def test_a_seed_on_a_main_effect_only_patch_grows_no_partner(planted):
    _, _, _, grown = _grow(planted, "main", floor=0.01)
    assert len(grown) == 1


def test_the_game_of_a_set_adds_up_and_its_values_are_the_scores_of_its_images(planted):
    sc, clf, img, labels = planted
    x = np.transpose(img, (2, 0, 1)).astype(np.float64)
    parts = split_parts(np.concatenate([p.pixels(64) for p in sc["pair"]]), (64, 64), 4)
    game = PartsGame(x, clf, 0, parts, removal="baseline")
    s = analyse_game(game)
    assert s.dividends[1:].sum() == pytest.approx(s.effect)
    assert game.n_forward == 16
    import torch
    full = clf(torch.from_numpy(x[None]).float().double())[0, 0].item()
    assert s.values[-1] == pytest.approx(full, rel=1e-6)


def test_the_interaction_test_flags_planted_sets_and_not_their_controls(planted):
    sc, clf, img, labels = planted
    for role in ("pair", "triple"):
        ex, seed, _, grown = _grow(planted, role, floor=0.01)
        pixels = feature_pixels(grown.members, ex.shape, "pixel")
        t = interaction_test(ex.x, clf, 0, pixels, seed.yx, labels, ex.attribution().attribution.numpy(),
                             removal="baseline", n_parts=6, n_moved=2)
        assert t.set.nonadditive > 0.1
        assert all(c.nonadditive < 0.05 for c in t.controls if c.name != "top-ig")
        assert t.p_value == pytest.approx(1 / (1 + len(t.controls)))
        assert t.verdict().startswith("these pixels act together")
        assert len(t.controls) == 4 and all(len(c.pixels) == len(t.set.pixels) for c in t.controls)
        assert t.above_controls
    # an (H, W, 3) array is refused with the fix, not tested on the wrong pixels
    with pytest.raises(ValueError, match="channels-first.*transpose"):
        interaction_test(sc["image"], clf, 0, pixels, seed.yx, labels)


def test_controls_have_the_sets_size_and_start_from_its_seed():
    labels = np.zeros((32, 32), np.int64)
    labels[:, 16:] = 1
    near = nearest_control((10, 20), 30, labels)
    assert len(near) == 30 and 10 * 32 + 20 in near and (labels.ravel()[near] == 1).all()
    shape = np.array([10 * 32 + 20, 10 * 32 + 21, 11 * 32 + 20])
    moved = moved_controls(shape, labels, (10, 20), n_moved=3, seed=0)
    assert len(moved) == 3
    for m in moved:
        assert len(m) == 3 and len(set(m.tolist()) & set(shape.tolist())) == 0
        d = np.stack([m // 32 - shape // 32, m % 32 - shape % 32])
        assert (d == d[:, :1]).all()                   # the same shape, translated


def _auc(scores, labels):
    """Mann-Whitney AUC: the chance a planted pair outranks an unplanted one (ties count half)."""
    pos, neg = scores[labels], scores[~labels]
    return float(((pos[:, None] > neg[None]).sum() + 0.5 * (pos[:, None] == neg[None]).sum()) / (len(pos) * len(neg)))


@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_hessian_rows_detect_archipelagos_planted_pairs(k):
    """F1-F4 of Tsang et al. (2020), 40 inputs: |H_ij| summed over the input (+1) and baseline
    (-1) contexts ranks every planted pair above every other (their ArchDetect AUC is 1.0 too)."""
    import torch

    from hsets_widgets.hsets.hessian import hessian_rows
    from hsets_widgets.model.planted import synthetic_function

    f, pairs = synthetic_function(k, 40)
    h = sum(hessian_rows(torch.full((1, 1, 40), ctx, dtype=torch.float64), lambda b: f(b.reshape(len(b), -1)),
                         range(40), "channel").abs() for ctx in (1.0, -1.0))
    iu = np.triu_indices(40, 1)
    planted = np.array([(i, j) in pairs for i, j in zip(*iu)])
    assert planted.sum() == {1: 145, 2: 335, 3: 335, 4: 193}[k]
    assert _auc(h.numpy()[iu], planted) == 1.0


def test_partners_in_another_segment_are_found_only_when_growth_may_cross_segments(planted):
    sc, clf, img, _ = planted
    labels = np.ones((64, 64), np.int64)
    labels[:, 32:] = 2                                 # the planted pair straddles the two segments
    a, b = sc["pair"]
    sizes = {}
    for within in (True, False):
        ex = Explainer(img, model=clf, segmenter=labels, target=0, device="cpu", row_floor=0.01,
                       within_mask=within, dtype="float64")
        seed = ex.seed_at(a.y0 + 3, a.x0 + 3)
        assert seed.segment == 1
        got = set(ex.grow(seed).members.tolist())
        sizes[within] = (len(got & set(a.pixels(64).tolist())), len(got & set(b.pixels(64).tolist())))
    assert sizes[False] == (64, 64)                    # across segments: the whole planted pair
    assert sizes[True][1] == 0                         # confined: the partner is out of reach


def test_removal_replaces_only_the_removed_pixels():
    from hsets_widgets.metrics.interactions import remove_pixels

    img = np.random.default_rng(0).random((3, 16, 16))
    removed = np.zeros((16, 16), bool)
    removed[4:8, 4:8] = True
    for how in ("blur", "road", "baseline"):
        out = remove_pixels(img, removed, how, rng=0)
        assert np.array_equal(out[:, ~removed], img[:, ~removed])
        assert not np.allclose(out[:, removed], img[:, removed])
    assert np.all(remove_pixels(img, removed, "baseline")[:, removed] == 0.0)
    with pytest.raises(ValueError, match="unknown removal 'erase'"):
        remove_pixels(img, removed, "erase")


@pytest.mark.parametrize("role", ["pair", "triple"])
def test_the_interactions_preset_recovers_planted_partners_across_segments(planted, role):
    # the planted partners lie in another segment than the seed; the interactions preset (a
    # row floor, growth across segments) finds them and nothing else, the default pads its set
    sc, clf, img, _ = planted
    labels = np.zeros((64, 64), np.int64)
    labels[:, 32:] = 1
    patch = sc[role][0]
    want = set().union(*(q.pixels(64).tolist() for q in clf.module.interacting(patch) | {patch}))
    grown = {}
    for preset in ("default", "interactions"):
        ex = Explainer(img, model=clf, preset=preset, segmenter=labels, target=0, device="cpu", dtype="float64")
        grown[preset] = set(ex.grow(ex.seed_at(patch.y0 + 3, patch.x0 + 3)).members.tolist())
    assert len(grown["interactions"] & want) / len(want) >= 0.9
    assert len(grown["interactions"] & want) / len(grown["interactions"]) >= 0.9
    assert len(grown["default"] & want) / len(grown["default"]) < 0.5


# ---- the interaction test refuses what does not fit the image -----------------------------------
@pytest.fixture
def test_inputs(small32, photo48):
    x = torch.from_numpy(photo48.transpose(2, 0, 1).copy())
    labels = np.zeros((48, 48), np.int64)
    labels[:, 24:] = 1
    return x, small32, np.arange(100, 140), (2, 10), labels


@pytest.mark.parametrize("change, match", [
    (dict(pixels=np.array([-1, 5, 6])), "pixels lie in"),
    (dict(pixels=np.array([5, 48 * 48])), "pixels lie in"),
    (dict(seed_yx=(-1, 3)), "seed_yx"),
    (dict(seed_yx=(3, 48)), "seed_yx"),
    (dict(target=-1), "target"),
    (dict(target=5), "target"),
    (dict(x="x255"), r"\[0, 1\]"),
    (dict(labels=np.zeros((10, 10), np.int64)), "labels have shape"),
    (dict(seed=-3), "seed must be"),
])
def test_interaction_test_refuses_inputs_outside_the_image(test_inputs, change, match):
    from hsets_widgets.metrics.interactions import interaction_test

    x, clf, pixels, seed_yx, labels = test_inputs
    args = dict(x=x, classifier=clf, target=0, pixels=pixels, seed_yx=seed_yx, labels=labels, seed=0)
    if change.get("x") == "x255":
        change = dict(x=x * 255)
    args.update(change)
    seed = args.pop("seed")
    with pytest.raises(ValueError, match=match):
        interaction_test(args.pop("x"), args.pop("classifier"), args.pop("target"), args.pop("pixels"),
                         args.pop("seed_yx"), args.pop("labels"), seed=seed, n_parts=2)
