"""The cost of the answering forward per vision-token cut (eval/answer_cost.py, ``seal bench answer-cost``):
FLOPs are counted (positive, the same on every call), a cut that removes tokens counts fewer, keeping every
token counts the same as no cut, and the tokens reported are the image tokens in the model's input."""

import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch

from eval.answer_cost import Cut, measure_question, parse_cuts, run_answer_cost
from eval.bench_vqa import ground_truth_memory as answering_memory
from seal.agent.pipeline import token_keep
from seal.cli.main import main
from seal.core.errors import ConfigError
from seal.vqa import VQAModel
from tests.test_agent_fixtures import VWM, write_scene
from tests.vlm_fixtures import cached_tiny_vlm
from vwm.layout import VWMConfig


@pytest.fixture(scope="module")
def vqa():
    torch.set_num_threads(1)
    return VQAModel.load(cached_tiny_vlm("llava"), vwm_config=VWMConfig(**VWM))


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    image_path, ann_path = write_scene(tmp_path_factory.mktemp("scene"))
    return {**json.loads(ann_path.read_text()), "image_path": image_path}  # global view + 2 target crops


def _measure(vqa, sample, cut: Cut, repeats: int = 0) -> dict:
    vqa.keep_tokens(token_keep(cut.budget("unused", "unused"), vqa.processor))
    try:
        return measure_question(vqa, sample, answering_memory(vqa, sample, 10**7), repeats)
    finally:
        vqa.keep_tokens(None)


def test_uncut_flops_are_positive_and_the_same_on_every_call(vqa, sample):
    first, second = _measure(vqa, sample, Cut("none")), _measure(vqa, sample, Cut("none"))
    assert first["flops"] > 0 and first["flops"] == second["flops"]
    assert first["tokens"] == second["tokens"] == 3 * (first["tokens"] // 3) > 0  # three images, N each


def test_a_stride_cut_counts_fewer_flops_and_keeping_every_token_the_same(vqa, sample):
    none = _measure(vqa, sample, Cut("none"))
    half = _measure(vqa, sample, Cut("stride", 0.5))
    everything = _measure(vqa, sample, Cut("stride", 1.0))
    assert half["tokens"] == none["tokens"] // 2
    assert 0 < half["flops"] < none["flops"]
    assert everything["tokens"] == none["tokens"] and everything["flops"] == none["flops"]


@pytest.mark.parametrize("cut", [Cut("none"), Cut("stride", 0.5), Cut("topk_norm", 0.25)])
def test_the_reported_tokens_are_the_image_tokens_in_the_models_input(vqa, sample, cut):
    row = _measure(vqa, sample, cut)
    vqa.keep_tokens(token_keep(cut.budget("unused", "unused"), vqa.processor))
    try:
        enc = vqa.encode(sample["question"], answering_memory(vqa, sample, 10**7))
    finally:
        vqa.keep_tokens(None)
    assert row["tokens"] == int((enc["input_ids"] == vqa.image_token_id).sum())


def test_the_report_has_every_cut_timed_and_its_ratios_to_none(vqa, sample):
    report = run_answer_cost(vqa, [sample, sample], [Cut("none"), Cut("stride", 0.25)], repeats=2,
                             max_pixels=10**7)
    none, cut = report["cuts"]["none"], report["cuts"]["stride@0.25"]
    assert none["n"] == cut["n"] == 2 and report["questions"] == 2
    keys = ("tokens", "gflops", "gflops_after_tower", "ms_min", "ms_median")
    assert none["ratio_to_none"] == {k: 1.0 for k in keys}
    assert cut["ratio_to_none"]["tokens"] == pytest.approx(cut["tokens"] / none["tokens"], abs=1e-3)
    assert cut["ratio_to_none"]["tokens"] < 0.3
    assert cut["ratio_to_none"]["gflops"] < 1 and cut["gflops_after_tower"] < none["gflops_after_tower"]
    assert 0 < report["tower_flops"][0] < report["rows"]["none"][0]["flops"]
    assert 0 < none["ms_min"] <= none["ms_median"]
    assert vqa.token_keep is None  # the cut is reset


def test_cuts_parse_and_bad_ones_name_the_flag():
    assert [c.name for c in parse_cuts("none, stride:0.5,merger+pruners:0.5,entropy:0.25")] == \
        ["none", "stride@0.5", "merger+pruners@0.5", "entropy@0.25"]
    for bad in ("stride", "bogus:0.5", "stride:1.5", "stride:x", ""):
        with pytest.raises(ConfigError, match="--cuts"):
            parse_cuts(bad)


def test_seal_bench_answer_cost_with_the_shipped_models(tmp_path, capsys):
    from eval.bench_vqa import ensure_benchmark

    data, out = tmp_path / "mixed", tmp_path / "cost.json"
    ensure_benchmark(data, 2, 0)
    code = main(["bench", "answer-cost", "--data", str(data), "--cuts", "none,merger:0.5,pruners:0.5",
                 "--repeats", "1", "--out", str(out)])
    assert code == 0
    report = json.loads(out.read_text())
    assert report["questions"] == 2 and report["torch_threads"] == 1
    cuts = report["cuts"]
    assert cuts["merger@0.5"]["tokens"] == cuts["none"]["tokens"] / 2
    assert cuts["none"]["tokens"] > cuts["pruners@0.5"]["tokens"] > cuts["merger@0.5"]["tokens"]  # mean over layers
    assert cuts["pruners@0.5"]["gflops"] < cuts["none"]["gflops"]
    assert "| merger@0.5 |" in capsys.readouterr().out
    assert main(["bench", "answer-cost", "--data", str(data), "--cuts", "stride", "--out", str(out)]) == 2
