"""The search model's token cut (search/vsm/token_cut.py, ``search.token_cut``): the VSM's LM reads K < N image
tokens per patch. At ratio 1 (and entropy at alpha 1) the predictions equal the uncut ones; a cut shortens each LM
row by exactly the dropped tokens; the predictor counts the tokens its LM read, and the agent's ledger books them;
impossible settings are ConfigErrors naming the field."""

import math
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest
import torch

from seal.core.config import from_dict
from seal.core.errors import ConfigError
from seal.core.image_source import ImageSource
from search.config import SearchConfig
from search.vsm.config import TokenCutConfig, VSMPredictorConfig
from search.vsm.predictor import VSMPredictor
from tests.test_vsm_fixtures import BACKBONE, HEADS, perturb_adapter, scene, tiny_vsm

REGIONS = [(0.0, 0.0, 200.0, 150.0), (100.0, 100.0, 200.0, 200.0), (30.0, 20.0, 110.0, 100.0),
           (230.0, 150.0, 370.0, 290.0)]
"""A letterboxed quadrant holding the red square, a flat grey square, a square around the red square and one
around the blue bar: the entropy cut keeps a different number of tokens for each."""
N = (BACKBONE["image_size"] // BACKBONE["patch_size"]) ** 2  # 16 image tokens (4 x 4 grid)
ENTROPY = dict(mode="entropy", entropy_mode="v1", thresholds=(0.5, 0.5))
"""Fixed thresholds low enough that a cell holding an edge of the scene's flat shapes is split."""


@pytest.fixture(scope="module")
def vsm():
    model = tiny_vsm()
    perturb_adapter(model)
    with torch.no_grad():  # spread the box scores so that a changed <LOC> state shows
        model.box_decoder.class_head.weight.normal_(0.0, 2.0)
    return model.eval()


@pytest.fixture(scope="module")
def image():
    return ImageSource(scene(), "scene.png")


def _predictor(vsm, **cut):
    return VSMPredictor(vsm, VSMPredictorConfig(token_cut=TokenCutConfig(**cut)))


def _locate(predictor, image, target="red square"):
    predictor.set_image(image)
    return predictor.locate(target, REGIONS)


class LMInputs:
    """Records what the VSM's language model is given (a forward pre-hook on its ``LlavaModel``): per call,
    the sequence length and each row's image-token count (``input_ids``), and the kept-token tensors
    passed in ``mm_encoder_outputs``."""

    def __init__(self, vsm):
        self.image_token_id = vsm.family.image_token_id
        self.calls: list[tuple[int, list[int]]] = []
        self.tensors: dict[int, torch.Tensor] = {}
        self._handle = vsm.backbone.model.register_forward_pre_hook(self._record, with_kwargs=True)

    def _record(self, module, args, kwargs):
        ids, mask = kwargs["input_ids"], kwargs["attention_mask"]
        self.calls.append((int(ids.shape[1]), ((ids == self.image_token_id) & mask.bool()).sum(1).tolist()))
        for t in kwargs["mm_encoder_outputs"]["image"].pooler_output:
            self.tensors[id(t)] = t  # held, so an id is never reused

    def close(self):
        self._handle.remove()


def _same(a, b):
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x.boxes_xyxy, y.boxes_xyxy)
        np.testing.assert_array_equal(x.scores, y.scores)
        np.testing.assert_array_equal(x.heatmap, y.heatmap)


@pytest.mark.parametrize("cut", [dict(mode="stride", ratio=1.0), dict(mode="topk_norm", ratio=1.0),
                                 dict(mode="entropy", alpha=1.0)])
def test_keeping_every_token_gives_the_uncut_predictions(vsm, image, cut):
    _same(_locate(_predictor(vsm, **cut), image), _locate(_predictor(vsm), image))


@pytest.mark.parametrize("cut", [dict(mode="stride", ratio=0.5), dict(mode="topk_norm", ratio=0.25),
                                 ENTROPY])
def test_the_lm_reads_only_the_kept_tokens(vsm, image, cut):
    """Each LM row holds K_i image tokens, the sequence is shorter by exactly the dropped ones, the stats count
    what the LM read, and the <LOC> state (so the boxes) changes."""
    full_in, cut_in = LMInputs(vsm), None
    try:
        full = _locate(_predictor(vsm), image)
        full_in.close()
        cut_in = LMInputs(vsm)
        predictor = _predictor(vsm, **cut)
        dets = _locate(predictor, image)
    finally:
        full_in.close()
        if cut_in is not None:
            cut_in.close()
    ((full_len, full_counts),), ((cut_len, counts),) = full_in.calls, cut_in.calls
    assert full_counts == [N] * len(REGIONS)
    if cut["mode"] == "entropy":
        assert len(set(counts)) > 1 and min(counts) == 1  # the flat grey square is one L3 patch
    else:
        assert counts == [math.ceil(N * cut["ratio"])] * len(REGIONS)
    assert cut_len == full_len - (N - max(counts))  # right padding: the longest row sets the length
    stats = predictor.stats()
    assert stats.extra["vision_tokens"] == stats.extra["lm_image_tokens"] == sum(counts)
    assert sum(int(t.shape[0]) for t in cut_in.tensors.values()) == sum(counts)
    assert any(not np.array_equal(a.scores, b.scores) for a, b in zip(dets, full))
    predictor.locate("blue bar", REGIONS)  # cached patches: read again, not encoded again
    stats = predictor.stats()
    assert (stats.extra["vision_tokens"], stats.extra["lm_image_tokens"]) == (sum(counts), 2 * sum(counts))


def test_the_cut_rows_match_one_row_at_a_time(vsm, image):
    """Rows of different lengths in one padded batch give what each row gives alone."""
    batched = _locate(_predictor(vsm, **ENTROPY), image)
    single = VSMPredictor(vsm, VSMPredictorConfig(max_batch=1, token_cut=TokenCutConfig(**ENTROPY)))
    single.set_image(image)
    for region, det in zip(REGIONS, batched):
        (alone,) = single.locate("red square", [region])
        np.testing.assert_allclose(alone.scores, det.scores, atol=1e-5)
        np.testing.assert_allclose(alone.heatmap, det.heatmap, atol=1e-4)


def test_the_ledger_books_the_tokens_the_search_model_read(vsm, tmp_path):
    """``seal ask``'s agent with a cut: the search's booked vision tokens are the kept tokens of every patch
    the VSM's LM read (each patch once), fewer than its N tokens per patch."""
    from PIL import Image

    from seal.agent.pipeline import Agent
    from seal.config import load
    from tests.vlm_fixtures import cached_tiny_vlm

    out = vsm.save_pretrained(tmp_path / "vsm")
    cfg = load([], [f"models.vqa_path={cached_tiny_vlm('llava')}", f"models.vsm_path={out}",
                    "models.localizer=vsm", "policy.baseline_name=always_full", "agent.max_new_tokens=4",
                    "vwm.view_side_px=64", "vwm.crop_side_px=56", "search.max_nodes=4", "hit_check.enabled=false",
                    "search.token_cut.mode=entropy", "search.token_cut.entropy_mode=v1",
                    "search.token_cut.thresholds=[0.5, 0.5]"])
    agent = Agent.from_config(cfg)
    img = Image.new("RGB", (300, 200), (128, 128, 128))
    img.paste((220, 20, 20), (40, 30, 80, 70))
    agent.set_image(img)
    read = LMInputs(agent.localizer.model)
    try:
        result = agent.ask("What is the color of the circle?", ["red", "blue"], force_action="full")
    finally:
        read.close()
    cost = result.ledger.to_json()
    kept = [int(t.shape[0]) for t in read.tensors.values()]
    assert cost["search_calls"] >= 1 and kept and max(kept) <= N and min(kept) < N
    assert cost["vision_tokens_search"] == sum(kept)


@pytest.mark.parametrize("fields, match", [
    (dict(mode="stride", ratio=0.0), "search.token_cut.ratio"),
    (dict(mode="topk_norm", ratio=1.5), "search.token_cut.ratio"),
    (dict(mode="merger"), "search.token_cut.mode"),
    (dict(mode="entropy", alpha=1.5), "search.token_cut.alpha"),
    (dict(mode="entropy", entropy_mode="v3"), "search.token_cut.entropy_mode"),
    (dict(mode="entropy", bins=1), "search.token_cut.bins"),
])
def test_impossible_settings_name_the_field(fields, match):
    with pytest.raises(ConfigError, match=match):
        TokenCutConfig(**fields)
    with pytest.raises(ConfigError, match=match):  # as the CLI's config loader builds it
        from_dict(SearchConfig, {"token_cut": fields}, prefix="search.")


def test_entropy_needs_a_grid_side_that_is_a_multiple_of_4():
    """A 24 px tower with 8 px patches has a 3 x 3 grid: the cascade cannot cover it."""
    from search.vsm.model import VSMModel
    from search.vsm.config import VSMConfig
    from seal.models.backbone import TinyBackboneConfig, build_tiny_llava
    from tests.test_vsm_fixtures import tiny_tokenizer

    llava, processor = build_tiny_llava(TinyBackboneConfig(**{**BACKBONE, "image_size": 24}), tiny_tokenizer())
    small = VSMModel.build(llava, processor, VSMConfig(**HEADS))
    with pytest.raises(ConfigError, match="search.token_cut.mode.*3 x 3"):
        _predictor(small, mode="entropy")
    _predictor(small, mode="stride", ratio=0.5)  # the other cuts take any grid


def test_a_family_whose_tokens_cannot_be_cut_is_refused():
    from search.vsm.base import load_base
    from search.vsm.config import VSMConfig
    from search.vsm.model import VSMModel
    from tests.vlm_fixtures import cached_tiny_vlm

    model, processor = load_base(cached_tiny_vlm("qwen2_5_vl"))
    qwen = VSMModel.build(model, processor, VSMConfig(**HEADS))
    with pytest.raises(ConfigError, match="search.token_cut.mode.*qwen2_5_vl"):
        _predictor(qwen, mode="stride", ratio=0.5)
    VSMPredictor(qwen)  # no cut: fine


def test_seal_bench_vsm_reports_the_tokens_read(vsm, tmp_path):
    """``run_bench`` (``seal bench vsm``) per search row: the image tokens the LM read and those of the newly
    encoded patches, from the predictor's own counts; K per encoded patch over the run."""
    from eval.bench_targets import BenchTarget
    from eval.bench_vsm import format_report, run_bench
    from seal.config import SearchCommandConfig

    path = tmp_path / "scene.png"
    scene().save(path)
    target = BenchTarget(path, tmp_path / "scene.json", "red square", np.array([[40.0, 30.0, 80.0, 70.0]]))
    predictor = _predictor(vsm, mode="stride", ratio=0.5)
    read = LMInputs(vsm)
    try:
        report = run_bench(predictor, [target], SearchCommandConfig(), timing_calls=0, log=lambda _: None,
                           strategies=("vstar",), patch_calibration=False)
    finally:
        read.close()
    (row,) = report["rows"]
    k = math.ceil(N * 0.5)
    assert row["lm_image_tokens"] == sum(sum(counts) for _, counts in read.calls) > 0
    assert row["vision_tokens"] == k * report["image_tokens"]["patches_encoded"] == sum(
        int(t.shape[0]) for t in read.tensors.values())
    assert report["image_tokens"]["per_patch"] == k
    assert report["search"]["vstar"]["mean_lm_image_tokens"] == row["lm_image_tokens"]
    assert f"image tokens per encoded patch: {k:.1f}" in format_report({**report, "token_cut": {"mode": "stride"}})
