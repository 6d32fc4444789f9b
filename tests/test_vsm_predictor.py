"""VSMPredictor: batched locate over regions, the per-image feature cache, frames back to
full-image pixels through the letterbox, the Localizer protocol and the ``vsm`` loader."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from seal.core.image_source import ImageSource
from search.localizer import Detection, Localizer
from search.vsm.config import VSMPredictorConfig
from search.vsm.localizer import load_vsm_localizer
from search.vsm.predictor import VSMPredictor
from seal.core.errors import InputError
from tests.test_vsm_fixtures import perturb_adapter, scene, tiny_vsm

QUADRANTS = [(0.0, 0.0, 200.0, 150.0), (200.0, 0.0, 400.0, 150.0), (0.0, 150.0, 200.0, 300.0),
             (200.0, 150.0, 400.0, 300.0)]


@pytest.fixture(scope="module")
def vsm():
    model = tiny_vsm()
    perturb_adapter(model)
    with torch.no_grad():  # spread the box scores so the ordering is meaningful
        model.box_decoder.class_head.weight.normal_(0.0, 2.0)
        model.box_decoder.class_head.bias.fill_(0.0)
    return model.eval()


@pytest.fixture(scope="module")
def image():
    return ImageSource(scene(), "scene.png")


def _inside(boxes, region):
    x0, y0, x1, y1 = region
    return (boxes[:, 0] >= x0 - 1e-6).all() and (boxes[:, 2] <= x1 + 1e-6).all() and \
        (boxes[:, 1] >= y0 - 1e-6).all() and (boxes[:, 3] <= y1 + 1e-6).all()


def test_predictor_is_a_localizer(vsm):
    p = VSMPredictor(vsm)
    assert isinstance(p, Localizer) and p.name == "vsm"
    with pytest.raises(RuntimeError, match="set_image"):
        p.locate("red square", QUADRANTS[:1])


def test_locate_four_regions_in_one_batch_and_cache_across_targets(vsm, image):
    p = VSMPredictor(vsm)
    p.set_image(image)
    dets = p.locate("red square", QUADRANTS)
    assert len(dets) == 4 and all(isinstance(d, Detection) for d in dets)
    s = p.stats()
    assert (s.patches_encoded, s.encode_cache_hits, s.extra["forwards"], s.extra["lm_rows"]) == (4, 0, 1, 4)
    for det, region in zip(dets, QUADRANTS):
        assert len(det.scores) >= 1 and _inside(det.boxes_xyxy, region)
        assert (np.diff(det.scores) <= 0).all() and ((det.scores >= 0) & (det.scores <= 1)).all()
        assert det.heatmap.shape == (24, 32)  # 200x150 letterboxed into 32x32: content 32x24
    first = s
    again = p.locate("blue bar", QUADRANTS)  # second target: no re-encoding
    s = p.stats()
    assert (first.encode_cache_hits, first.extra["forwards"]) == (0, 1)  # a snapshot, not live counters
    assert (s.patches_encoded, s.encode_cache_hits, s.extra["forwards"]) == (4, 4, 2)
    assert not np.allclose(again[0].heatmap, dets[0].heatmap)  # the target changes the answer
    cue = p.suggest_region("red square", QUADRANTS[0])
    assert cue.shape == (24, 32) and cue.dtype == np.float32
    assert (p.stats().patches_encoded, p.stats().encode_cache_hits) == (4, 5)
    assert not np.allclose(cue, dets[0].heatmap)  # context prompt != detection prompt
    p.set_image(image)
    assert (p.stats().patches_encoded, p.stats().encode_cache_hits) == (0, 0)
    p.locate("red square", QUADRANTS[:1])
    assert p.stats().patches_encoded == 1


def test_batched_and_chunked_calls_match_single_region_calls(vsm, image):
    batched = VSMPredictor(vsm, VSMPredictorConfig(max_batch=3))
    batched.set_image(image)
    dets = batched.locate("red square", QUADRANTS)
    assert batched.stats().extra["forwards"] == 2  # 4 regions in chunks of 3
    single = VSMPredictor(vsm)
    single.set_image(image)
    for det, region in zip(dets, QUADRANTS):
        (one,) = single.locate("red square", [region])
        assert np.allclose(det.boxes_xyxy, one.boxes_xyxy, atol=1e-3)
        assert np.allclose(det.scores, one.scores, atol=1e-5)
        assert np.allclose(det.heatmap, one.heatmap, atol=1e-4)


def test_boxes_and_heatmap_map_back_through_the_letterbox(vsm, image):
    region = (50.0, 100.0, 350.0, 200.0)  # 300x100: scale 32/300, padded top and bottom
    p = VSMPredictor(vsm)
    p.set_image(image)
    (det,) = p.locate("red square", [region])

    # the same computation by hand, with the frame arithmetic written out
    s = 32 / 300
    pad_y = (32 - 100 * s) / 2
    patch, _ = image.crop_resized(region, 32, 32, letterbox=True, fill=vsm.fill_color)
    with torch.no_grad():
        feats = vsm.encode_images(vsm.preprocess([patch]))
        enc = vsm.prompts(["detect"], ["red square"], with_reply=False)
        loc = vsm.loc_states(enc["input_ids"], enc["attention_mask"],
                             vsm.hidden_states(enc["input_ids"], enc["attention_mask"], feats))
        boxes, logits = vsm.detect(feats.vision, loc, enc["input_ids"], enc["attention_mask"])
        heat, _ = vsm.heatmap_decoder(feats.vision, loc)
    cx, cy, w, h = (boxes[0].double().numpy() * 32).T
    x0 = np.clip((cx - w / 2) / s + 50, 50, 350)
    x1 = np.clip((cx + w / 2) / s + 50, 50, 350)
    y0 = np.clip((cy - h / 2 - pad_y) / s + 100, 100, 200)
    y1 = np.clip((cy + h / 2 - pad_y) / s + 100, 100, 200)
    expected = np.stack([x0, y0, x1, y1], axis=1)
    scores = logits[0].sigmoid().double().numpy()
    keep = (x1 > x0) & (y1 > y0)
    order = np.argsort(-scores[keep], kind="stable")
    assert np.allclose(det.boxes_xyxy, expected[keep][order], atol=1e-3)
    assert np.allclose(det.scores, scores[keep][order], atol=1e-6)
    full = F.interpolate(heat[None], size=(32, 32), mode="bilinear", align_corners=False)[0, 0].numpy()
    top, rows = round(pad_y), round(100 * s)
    assert det.heatmap.shape == (rows, 32)
    assert np.allclose(det.heatmap, full[top:top + rows], atol=1e-5)


def test_feature_cache_is_bounded(vsm, image):
    p = VSMPredictor(vsm, VSMPredictorConfig(cache_size=2))
    p.set_image(image)
    p.locate("red square", QUADRANTS)  # all 4 needed by this call are kept while it runs
    p.locate("red square", QUADRANTS[3:])  # hit; the cache shrinks to the 2 most recent
    p.locate("red square", QUADRANTS[:1])  # evicted: encoded again
    assert (p.stats().patches_encoded, p.stats().encode_cache_hits) == (5, 1)


def test_load_vsm_localizer_round_trip(vsm, image, tmp_path):
    vsm.save_pretrained(tmp_path / "vsm")
    loc = load_vsm_localizer(tmp_path / "vsm")
    assert isinstance(loc, Localizer) and loc.name == "vsm"
    loc.set_image(image)
    ref = VSMPredictor(vsm)
    ref.set_image(image)
    for a, b in zip(loc.locate("red square", QUADRANTS[:2]), ref.locate("red square", QUADRANTS[:2])):
        assert np.allclose(a.boxes_xyxy, b.boxes_xyxy, atol=1e-3) and np.allclose(a.heatmap, b.heatmap, atol=1e-4)
    with pytest.raises(InputError, match="expected a checkpoint directory"):
        load_vsm_localizer(tmp_path / "nothing")
    (tmp_path / "plain").mkdir()
    with pytest.raises(InputError, match="expected a vsm checkpoint with manifest.json"):
        load_vsm_localizer(tmp_path / "plain")


def test_run_search_with_a_random_vsm_respects_budgets(vsm, image):
    from search.config import SearchConfig
    from search.engine import run_search
    from search.session import SearchSession

    quiet = tiny_vsm().eval()  # untrained box scores sit at the prior: never confident, budgets decide
    perturb_adapter(quiet)
    cfg = SearchConfig(max_nodes=3, max_model_calls=5, min_leaf_side=64)
    p = VSMPredictor(quiet)
    result = run_search(p, image, "red square", cfg)
    assert result.stop_reason in ("max_nodes", "max_model_calls") and not result.found
    assert 1 <= result.nodes_visited <= 3 and 1 <= result.model_calls <= 5
    s = p.stats()
    assert s.patches_encoded <= result.nodes_scored <= s.patches_encoded + s.encode_cache_hits
    if result.box_xyxy is not None:
        assert _inside(np.asarray([result.box_xyxy]), image.full_box())

    session = SearchSession(p, image, SearchConfig(max_nodes=2, min_leaf_side=64))
    first = session.search("red square")
    before = p.stats().patches_encoded
    second = session.search("blue bar")
    assert first.nodes_visited <= 2 and second.nodes_visited <= 2
    assert p.stats().patches_encoded - before < second.nodes_scored  # the second target reuses patches
