"""The per-cell box decoder and the convolutional detector stem (the shipped VSM's heads)."""

import json

import pytest
import torch

from search.vsm.box_patches import PatchBoxDecoder
from search.vsm.config import VSMConfig
from search.vsm.model import VSMModel
from search.vsm.stem import ConvStem
from seal.core.errors import ConfigError, InputError
from tests.test_vsm_fixtures import HEADS, random_patches, tiny_vsm


def test_patch_decoder_shapes_prior_and_loc_dependence():
    torch.manual_seed(0)
    dec = PatchBoxDecoder(16, 24, VSMConfig(**HEADS))
    feats, loc = torch.randn(3, 16, 4, 5), torch.randn(3, 24)
    boxes, logits = dec(feats, loc)
    assert boxes.shape == (3, 20, 4) and logits.shape == (3, 20)
    assert boxes.min() >= 0 and boxes.max() <= 1
    # a fresh box head predicts each cell's prior: centres on the grid, row-major
    assert torch.allclose(boxes[0, 0, :2], torch.tensor([0.5 / 5, 0.5 / 4]), atol=1e-4)
    assert torch.allclose(boxes[0, 6, :2], torch.tensor([1.5 / 5, 1.5 / 4]), atol=1e-4)
    assert logits.sigmoid().mean() < 0.2  # a fresh head claims little
    _, other = dec(feats, torch.randn(3, 24))
    assert not torch.allclose(logits, other)  # the score depends on the <LOC> state
    with pytest.raises(ValueError, match="same B"):
        dec(feats, torch.randn(2, 24))


def test_patch_decoder_learns_a_box():
    torch.manual_seed(0)
    dec = PatchBoxDecoder(8, 8, VSMConfig(**HEADS))
    feats, loc = torch.randn(1, 8, 4, 4), torch.randn(1, 8)
    target = torch.tensor([0.6, 0.4, 0.2, 0.1])
    opt = torch.optim.Adam(dec.parameters(), lr=1e-2)
    for _ in range(200):
        boxes, _ = dec(feats, loc)
        loss = (boxes[0, 9] - target).abs().sum()
        opt.zero_grad(), loss.backward(), opt.step()
    assert loss.item() < 0.02


def test_stem_is_zero_at_init_and_has_the_tower_grid():
    stem = ConvStem(32)
    out = stem(torch.randn(2, 3, 64, 64))
    assert out.shape == (2, 32, 4, 4) and float(out.detach().abs().max()) == 0.0
    assert ConvStem(32, stride=8)(torch.randn(1, 3, 64, 64)).shape == (1, 32, 8, 8)
    with pytest.raises(ValueError, match="stage widths"):
        ConvStem(32, (8, 16))
    with pytest.raises(ValueError, match="power of two"):
        ConvStem(32, stride=12)


def test_vsm_with_stem_and_patch_decoder_round_trips(tmp_path):
    vsm = tiny_vsm(detector_stem=True, box_decoder="patches")
    with torch.no_grad():
        torch.nn.init.normal_(vsm.detector_stem.proj.weight, std=0.1)
    out_dir = vsm.save_pretrained(tmp_path / "vsm")
    meta = json.loads((out_dir / "vsm_config.json").read_text())
    assert meta["vsm"]["box_decoder"] == "patches" and meta["vsm"]["detector_stem"] is True
    loaded = VSMModel.from_pretrained(out_dir)
    pixels = vsm.preprocess(random_patches(2, seed=3))
    enc = vsm.prompts(["detect", "detect"], ["red star", "blue circle"], False)
    with torch.no_grad():
        a = vsm.eval()(enc["input_ids"], enc["attention_mask"], vsm.encode_images(pixels))
        b = loaded(enc["input_ids"], enc["attention_mask"], loaded.encode_images(pixels))
    g = vsm.grid_size
    assert a.boxes.shape == (2, g * g, 4)
    assert torch.allclose(a.boxes, b.boxes, atol=1e-6) and torch.allclose(a.box_logits, b.box_logits, atol=1e-5)
    # strict: a checkpoint whose config lacks the stem does not load the stem's weights
    meta["vsm"]["detector_stem"] = False
    (out_dir / "vsm_config.json").write_text(json.dumps(meta))
    with pytest.raises(InputError, match="unexpected tensor 'detector_stem"):
        VSMModel.from_pretrained(out_dir)


def test_config_rejects_unknown_box_decoder():
    with pytest.raises(ConfigError, match="box_decoder"):
        VSMConfig(box_decoder="anchors")


def test_phrase_query_makes_the_query_depend_on_the_target_and_round_trips(tmp_path):
    plain = tiny_vsm().eval()
    vsm = tiny_vsm(phrase_query=True).eval()
    pixels = vsm.preprocess(random_patches(2, seed=5))
    enc = vsm.prompts(["detect", "detect"], ["red star", "blue circle"], False)
    with torch.no_grad():
        feats = vsm.encode_images(pixels[:1].repeat(2, 1, 1, 1))
        q = vsm.loc_states(enc["input_ids"], enc["attention_mask"],
                           vsm.hidden_states(enc["input_ids"], enc["attention_mask"], feats))
        q_plain = plain.loc_states(enc["input_ids"], enc["attention_mask"],
                                   plain.hidden_states(enc["input_ids"], enc["attention_mask"], feats))
    # same patch, two targets: the phrase path separates the queries far more than <LOC> alone
    assert (q[0] - q[1]).norm() > 3 * (q_plain[0] - q_plain[1]).norm()
    loaded = VSMModel.from_pretrained(vsm.save_pretrained(tmp_path / "vsm"))
    with torch.no_grad():
        a = vsm(enc["input_ids"], enc["attention_mask"], vsm.encode_images(pixels))
        b = loaded(enc["input_ids"], enc["attention_mask"], loaded.encode_images(pixels))
    assert torch.allclose(a.box_logits, b.box_logits, atol=1e-5) and torch.allclose(a.loc_state, b.loc_state, atol=1e-5)


def test_trainable_phrase_table_and_attribute_head_round_trip(tmp_path):
    from search.vsm.losses import VSMCriterion, VSMTargets
    from search.vsm.config import VSMLossConfig

    vsm = tiny_vsm(phrase_query=True, phrase_embed_dim=8, attribute_classes=(3, 2)).eval()
    pixels = vsm.preprocess(random_patches(2, seed=6))
    enc = vsm.prompts(["detect", "detect"], ["red star", "blue circle"], False)
    with torch.no_grad():
        out = vsm(enc["input_ids"], enc["attention_mask"], vsm.encode_images(pixels))
    g = vsm.grid_size
    assert out.attributes.shape == (2, 5, g, g) and out.attribute_classes == (3, 2)
    assert vsm.phrase_embed.weight.shape[1] == 8
    loaded = VSMModel.from_pretrained(vsm.save_pretrained(tmp_path / "vsm"))
    with torch.no_grad():
        again = loaded(enc["input_ids"], enc["attention_mask"], loaded.encode_images(pixels))
    assert torch.allclose(out.attributes, again.attributes, atol=1e-5)
    assert torch.allclose(out.loc_state, again.loc_state, atol=1e-5)
    # the auxiliary term: cross-entropy over labelled cells, -100 ignored, 0 without labels
    labels = torch.full((2, 2, g, g), -100, dtype=torch.long)
    labels[:, 0, 0, 0] = 2
    crit = VSMCriterion(VSMLossConfig(weights={"attributes": 1.0}))
    targets = VSMTargets(heatmaps=torch.zeros(2, *vsm.heatmap_size), boxes=[torch.zeros(0, 4)] * 2, attributes=labels)
    expected = torch.nn.functional.cross_entropy(out.attributes[:, :3, 0, 0], torch.tensor([2, 2]))
    assert torch.allclose(crit(out, targets)["attributes"], expected, atol=1e-5)
    no_labels = VSMTargets(heatmaps=targets.heatmaps, boxes=targets.boxes)
    assert float(crit(out, no_labels)["attributes"]) == 0.0


def test_config_rejects_bad_attribute_classes():
    with pytest.raises(ConfigError, match="attribute_classes"):
        VSMConfig(attribute_classes=(1, 4))
