"""``AllChecks``: several hit checks asked in turn, cheapest first; a box passes only if each passes it."""

import pytest

from search.hit_check.protocol import AllChecks, HitCheck
from tests.fakes import FakeHitCheck, blank_image

CUP = (1300.0, 300.0, 1340.0, 340.0)
MUG = (200.0, 1500.0, 240.0, 1540.0)


def test_all_of_asks_in_turn_and_stops_at_a_rejection():
    cheap, dear = FakeHitCheck({"cup": [CUP]}, p_true=0.8), FakeHitCheck({"cup": [CUP]}, p_true=0.6)
    both = AllChecks([cheap, dear], threshold=0.5)
    assert isinstance(both, HitCheck) and both.name == "fake_check+fake_check"
    both.set_image(blank_image(100, 100))
    assert both.check("cup", CUP) == pytest.approx(0.6)  # the lowest
    assert both.check("cup", MUG) == pytest.approx(0.05)  # rejected by the first: the second not asked
    assert len(cheap.asked) == 2 and len(dear.asked) == 1
    assert both.stats().calls == 2 and cheap.set_image_calls == dear.set_image_calls == 1


def test_all_of_abstains_only_when_every_member_does():
    quiet = FakeHitCheck({}, abstain=True)
    assert AllChecks([quiet, FakeHitCheck({}, abstain=True)], 0.5).check("cup", CUP) is None
    assert AllChecks([quiet, FakeHitCheck({"cup": [CUP]})], 0.5).check("cup", CUP) == pytest.approx(0.9)
    with pytest.raises(ValueError):
        AllChecks([], 0.5)
