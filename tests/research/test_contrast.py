"""research.contrast: the localizer checks its own hit against the target's one-word variants."""

import pytest

from research.contrast import ContrastCheck, ContrastConfig
from search.config import SearchConfig
from search.hit_check.protocol import HitCheck, HitCheckStats
from tests.fakes import FakeLocalizer, blank_image

CUP = (1300.0, 300.0, 1340.0, 340.0)
MUG = (200.0, 1500.0, 240.0, 1540.0)
VOCAB = {"color": ["red", "blue", "green"]}


def _contrast(scores: dict[str, list[tuple]], margin: float = 0.6) -> tuple[ContrastCheck, FakeLocalizer]:
    """A localizer that detects, for each name, its boxes with their own scores."""
    loc = FakeLocalizer({}, decoys=scores)
    ver = ContrastCheck(loc, ContrastConfig(VOCAB, margin=margin), SearchConfig())
    image = blank_image(2048, 2048)
    loc.set_image(image)
    ver.set_image(image)
    return ver, loc


def test_variants_swap_one_contrasted_word():
    ver, _ = _contrast({})
    assert ver.variants("Red Cup") == ["blue cup", "green cup"]
    assert ver.variants("cup") == []


def test_target_read_better_than_its_variants_passes():
    ver, loc = _contrast({"red cup": [(CUP, 0.9)], "blue cup": [(CUP, 0.5)]})
    assert isinstance(ver, HitCheck)
    assert ver.check("red cup", CUP) == pytest.approx(0.9 / (0.9 + 0.6 * 0.5))
    # one window around the box, located under the target and both variants
    assert [c[1] for c in loc.calls] == ["red cup", "blue cup", "green cup"]
    (window,) = {tuple(c[2][0]) for c in loc.calls}
    side = window[2] - window[0]
    assert window[0] <= CUP[0] and window[2] >= CUP[2] and side == pytest.approx(1.25 * 256)
    assert ver.stats() == HitCheckStats(calls=1, localizer_calls=3)


def test_a_box_a_variant_explains_better_is_rejected():
    ver, _ = _contrast({"red cup": [(MUG, 0.3)], "green cup": [(MUG, 0.9)]})
    p = ver.check("red cup", MUG)
    assert p == pytest.approx(0.3 / (0.3 + 0.54)) and p < 0.5
    # a variant's detection elsewhere in the window is not this box's
    ver, _ = _contrast({"red cup": [(MUG, 0.3)], "green cup": [((250.0, 1500.0, 290.0, 1540.0), 0.9)]})
    assert ver.check("red cup", MUG) == pytest.approx(1.0)


def test_nothing_to_contrast_or_nothing_detected_abstains():
    ver, loc = _contrast({"red cup": [(CUP, 0.9)]})
    assert ver.check("cup", CUP) is None and not loc.calls
    assert ver.check("red cup", MUG) is None
    assert ver.stats().abstained == 2


def test_contrast_needs_an_image_and_sane_knobs():
    with pytest.raises(RuntimeError, match="set_image"):
        ContrastCheck(FakeLocalizer({}), ContrastConfig(VOCAB), SearchConfig()).check("red cup", CUP)
    with pytest.raises(ValueError, match="margin"):
        ContrastConfig(VOCAB, margin=0.0)
    assert "hexagon" in ContrastConfig().vocabularies["shape"]  # the measured runs contrasted shapes
