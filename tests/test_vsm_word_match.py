"""The conjunctive word scorer and the cross-patch presence loss (what makes a box score > 0.5 mean
"the named object is here")."""

import pytest
import torch

from search.vsm.config import VSMConfig, VSMLossConfig
from search.vsm.losses import VSMCriterion, VSMTargets
from search.vsm.model import VSMModel, VSMOutput
from search.vsm.word_match import WordMatch
from seal.core.errors import ConfigError
from tests.test_vsm_fixtures import random_patches, tiny_vsm


def _hand_set(head: WordMatch) -> None:
    """Cell features = word indicators: channel k of a cell says "word k describes this object"."""
    with torch.no_grad():
        head.cell[0].weight.zero_(), head.cell[0].bias.zero_(), head.cell[2].weight.zero_(), head.cell[2].bias.zero_()
        for k in range(4):
            head.cell[0].weight[k, k] = 1.0
            head.cell[2].weight[k, k, 1, 1] = 1.0 / 0.8413  # undo GELU(1) = 0.841: channel k -> 0 (off) or 1 (on)
        head.word.weight.zero_()
        head.word.weight[:4, :4] = torch.eye(4) * 16.0 / head.scale
        head.bias.weight.fill_(-8.0)  # word k scores 16 * channel k - 8: +8 when on, -8 when off


def test_one_wrong_word_sinks_the_cell():
    head = WordMatch(4, vocab_size=6, dim=4)
    _hand_set(head)
    feats = torch.zeros(1, 4, 1, 3)
    feats[0, [0, 1], 0, 0] = 1.0  # cell 0: words 0 and 1 ("red", "star")
    feats[0, 0, 0, 1] = 1.0  # cell 1: word 0 only (a red circle: a near miss)
    feats[0, [0, 1, 2], 0, 2] = 1.0  # cell 2: words 0, 1 and 2
    ids = torch.tensor([[0, 1, 5]])
    keep = torch.tensor([[True, True, False]])  # word 5 (padding) does not count
    with torch.no_grad():
        logits = head(feats, ids, keep)
    p = logits.sigmoid()[0]
    assert logits.shape == (1, 3)
    assert p[0] > 0.99 and p[2] > 0.99 and p[1] < 0.01  # an AND over the phrase's words
    with torch.no_grad():
        assert torch.allclose(head(feats, torch.tensor([[0, 1, 3]]), keep), logits)  # masked word ignored
    with pytest.raises(ValueError, match="same B"):
        head(feats, ids.repeat(2, 1), keep.repeat(2, 1))


def test_fresh_word_scorer_moves_the_scores_little_and_needs_per_cell_candidates():
    head = WordMatch(8, vocab_size=10)
    with torch.no_grad():
        logits = head(torch.randn(2, 8, 3, 3), torch.randint(0, 10, (2, 5)), torch.ones(2, 5, dtype=torch.bool))
    assert logits.shape == (2, 9) and float(logits.min()) > 0.5  # ~sigmoid(3) per word: "every cell matches"
    with pytest.raises(ConfigError, match="patches"):
        VSMConfig(word_match=True, box_decoder="queries")


def test_vsm_with_word_match_round_trips_and_depends_on_each_word(tmp_path):
    vsm = tiny_vsm(box_decoder="patches", word_match=True, word_match_dim=8).eval()
    with torch.no_grad():
        torch.nn.init.normal_(vsm.word_match.word.weight, std=1.0)
    pixels = vsm.preprocess(random_patches(1, seed=2)).repeat(2, 1, 1, 1)
    enc = vsm.prompts(["detect", "detect"], ["red star", "red circle"], False)
    with torch.no_grad():
        out = vsm(enc["input_ids"], enc["attention_mask"], vsm.encode_images(pixels))
        loaded = VSMModel.from_pretrained(vsm.save_pretrained(tmp_path / "vsm"))
        again = loaded(enc["input_ids"], enc["attention_mask"], loaded.encode_images(pixels))
    assert not torch.allclose(out.box_logits[0], out.box_logits[1])  # one word changed, the scores move
    assert torch.allclose(out.box_logits, again.box_logits, atol=1e-5)


def _presence_case(hit: float, miss: float, absent_best: float) -> dict[str, torch.Tensor]:
    """Row 0 holds the target in query 0 (query 2 is a far-away miss); row 1 has no target."""
    boxes = torch.tensor([[[0.3, 0.3, 0.2, 0.2], [0.31, 0.3, 0.2, 0.2], [0.8, 0.8, 0.1, 0.1]]]).repeat(2, 1, 1)
    logits = torch.tensor([[hit, -5.0, miss], [absent_best, -5.0, -5.0]])
    out = VSMOutput(heatmap=torch.zeros(2, 4, 4), quality=torch.ones(2), boxes=boxes, box_logits=logits,
                    loc_state=torch.zeros(2, 8))
    targets = VSMTargets(heatmaps=torch.zeros(2, 4, 4), boxes=[torch.tensor([[0.3, 0.3, 0.2, 0.2]]), torch.zeros(0, 4)])
    crit = VSMCriterion(VSMLossConfig(weights={"box_presence": 1.0, "box_focal": 1.0}))
    return crit(out, targets)


def test_presence_loss_wants_the_hit_high_and_every_miss_low():
    good = _presence_case(hit=6.0, miss=-6.0, absent_best=-6.0)["box_presence"]
    assert float(good) < 0.01
    assert float(_presence_case(6.0, 6.0, -6.0)["box_presence"]) > 1.0  # a confident miss beside the target
    assert float(_presence_case(6.0, -6.0, 6.0)["box_presence"]) > 1.0  # a confident box where nothing is
    assert float(_presence_case(-6.0, -6.0, -6.0)["box_presence"]) > 1.0  # a timid hit
    # the neighbour overlapping the target (query 1, IoU > 0.3) is not a miss: scoring it high costs nothing
    case = _presence_case(6.0, -6.0, -6.0)
    assert float(case["box_presence"]) == pytest.approx(float(good), abs=1e-6)
    with pytest.raises(ConfigError, match="presence_miss_iou"):
        VSMLossConfig(presence_miss_iou=1.5)
