"""VSM heads and prompt layout: decoder shapes and conditioning, <LOC> position by id."""

import pytest
import torch

from search.vsm.box_decoder import PRIOR_PROBABILITY, BoxDecoder
from search.vsm.config import VSMConfig
from search.vsm.heatmap_decoder import HeatmapDecoder
from search.vsm.prompts import IGNORE_INDEX, encode_prompts, loc_positions, row_token_ids
from seal.core.errors import ConfigError
from seal.models.tokenizer import LOC_TOKEN
from tests.test_vsm_fixtures import HEADS, tiny_tokenizer

VISION, TEXT = 24, 40


@pytest.fixture(scope="module")
def cfg():
    return VSMConfig(**HEADS)


@pytest.fixture(scope="module")
def tokenizer():
    return tiny_tokenizer()


def _inputs(b, seed=0, grid=4):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, VISION, grid, grid, generator=g), torch.randn(b, TEXT, generator=g)


@pytest.mark.parametrize("b", [1, 4])
def test_heatmap_decoder_shapes(cfg, b):
    torch.manual_seed(0)
    dec = HeatmapDecoder(VISION, TEXT, cfg).eval()
    feats, loc = _inputs(b)
    with torch.no_grad():
        heat, quality = dec(feats, loc)
    assert heat.shape == (b, 16, 16) and heat.dtype == torch.float32  # 4x the 4x4 grid
    assert quality.shape == (b,)
    assert torch.isfinite(heat).all()
    with torch.no_grad():  # a non-square grid keeps its aspect
        heat2, _ = dec(torch.randn(b, VISION, 3, 5), loc)
    assert heat2.shape == (b, 12, 20)


def test_heatmap_decoder_batch_equals_single_rows_and_depends_on_loc(cfg):
    torch.manual_seed(0)
    dec = HeatmapDecoder(VISION, TEXT, cfg).eval()
    feats, loc = _inputs(4, seed=3)
    with torch.no_grad():
        batched, q = dec(feats, loc)
        for i in range(4):
            single, qi = dec(feats[i:i + 1], loc[i:i + 1])
            assert torch.allclose(batched[i], single[0], atol=1e-5)
            assert torch.allclose(q[i], qi[0], atol=1e-5)
        other, _ = dec(feats, loc.flip(0))
    assert not torch.allclose(batched, other, atol=1e-3)  # the <LOC> state steers the heatmap


@pytest.mark.parametrize("b", [1, 4])
def test_box_decoder_shapes_range_and_prior(cfg, b):
    torch.manual_seed(0)
    dec = BoxDecoder(VISION, TEXT, cfg).eval()
    feats, loc = _inputs(b)
    with torch.no_grad():
        boxes, logits = dec(feats, loc)
    assert boxes.shape == (b, cfg.box_queries, 4) and logits.shape == (b, cfg.box_queries)
    assert (boxes >= 0).all() and (boxes <= 1).all()
    # untrained: every query scores about the focal prior, i.e. "nothing here"
    assert torch.allclose(logits.sigmoid().mean(), torch.tensor(PRIOR_PROBABILITY), atol=0.02)
    with torch.no_grad():
        boxes2, _ = dec(feats, loc + 3.0)
    assert not torch.allclose(boxes, boxes2, atol=1e-4)  # boxes depend on the <LOC> state


def test_box_decoder_is_trainable(cfg):
    dec = BoxDecoder(VISION, TEXT, cfg)
    feats, loc = _inputs(2)
    boxes, logits = dec(feats, loc)
    (boxes.sum() + logits.sum()).backward()
    assert dec.box_head[0].weight.grad is not None and dec.box_head[0].weight.grad.abs().sum() > 0
    assert dec.loc_proj[0].weight.grad.abs().sum() > 0


def test_config_validation():
    with pytest.raises(ConfigError, match="heatmap_heads"):
        VSMConfig(decoder_dim=32, heatmap_heads=3)
    with pytest.raises(ConfigError, match="loc_state"):
        VSMConfig(loc_state="after")
    with pytest.raises(ConfigError, match="unknown fields"):
        VSMConfig.from_dict({"decoder_dim": 32, "bogus": 1})
    assert VSMConfig.from_dict(VSMConfig(**HEADS).to_dict()) == VSMConfig(**HEADS)


# ---- prompts ---------------------------------------------------------------------------------------

def test_inference_row_is_the_training_row_cut_after_loc(tokenizer):
    loc = tokenizer.convert_tokens_to_ids(LOC_TOKEN)
    for kind in ("detect", "context"):
        train_ids, labels = row_token_ids(tokenizer, kind, "red star", 16, with_reply=True)
        infer_ids, infer_labels = row_token_ids(tokenizer, kind, "red star", 16, with_reply=False)
        assert infer_ids[-1] == loc and train_ids[:len(infer_ids)] == infer_ids
        assert train_ids[-1] == tokenizer.eos_token_id
        assert set(infer_labels) == {IGNORE_INDEX}
        reply = [t for t, lab in zip(train_ids, labels) if lab != IGNORE_INDEX]
        assert loc in reply and reply[-1] == tokenizer.eos_token_id
        assert train_ids.count(tokenizer.convert_tokens_to_ids("<image>")) == 16
    detect = tokenizer.decode(row_token_ids(tokenizer, "detect", "red star", 1, True)[0])
    assert "Please locate the red star in this image." in detect and "Sure, <LOC>." in detect


def test_loc_positions_by_id_and_errors(tokenizer):
    loc = tokenizer.convert_tokens_to_ids(LOC_TOKEN)
    enc = encode_prompts(tokenizer, ["detect", "context"], ["red star", "a much longer blue circle name"], 16, True)
    pos = loc_positions(enc["input_ids"], loc, enc["attention_mask"])
    for row, p in enumerate(pos.tolist()):
        assert enc["input_ids"][row, p] == loc
    assert pos[0] != pos[1]  # found per row, not at a fixed offset
    no_loc = enc["input_ids"].clone()
    no_loc[1, pos[1]] = tokenizer.pad_token_id
    with pytest.raises(ValueError, match=r"row 1 holds 0"):
        loc_positions(no_loc, loc)
    two = enc["input_ids"].clone()
    two[0, 3] = loc
    with pytest.raises(ValueError, match=r"row 0 holds 2"):
        loc_positions(two, loc)
    padded = enc["input_ids"].clone()
    short = int(enc["attention_mask"][0].sum())
    padded[0, short] = loc  # a <LOC> on padding does not count
    assert loc_positions(padded, loc, enc["attention_mask"]).tolist() == pos.tolist()
    with pytest.raises(ValueError, match="empty"):
        encode_prompts(tokenizer, ["detect"], ["   "], 16, False)
