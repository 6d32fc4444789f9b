"""The pruning proxy removes vision tokens from the VQA model's input (seal/vqa/token_keep.py): the model reads
K = ceil(N * ratio) tokens per image, the same logits as the full prompt at ratio 1, the largest-norm tokens under
topk_norm, and the ledger books exactly the tokens in the input."""

import json
import math
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch

from seal.cli.main import main
from seal.core.errors import ConfigError
from seal.vqa import VQAModel
from seal.vqa.scoring import prompt_state
from seal.vqa.token_keep import TokenKeep
from tests.test_agent_fixtures import OPTIONS, QUESTION, VWM, scene, write_scene
from tests.vlm_fixtures import cached_tiny_vlm
from vwm.layout import VWMConfig


@pytest.fixture(scope="module")
def vqa():
    return VQAModel.load(cached_tiny_vlm("llava"), vwm_config=VWMConfig(**VWM))


def _full_and_kept(vqa, keep):
    vqa.keep_tokens(None)
    full = vqa.encode(QUESTION, vqa.memory(scene(), None))
    n = vqa.last_image_tokens
    vqa.keep_tokens(keep)
    try:
        kept = vqa.encode(QUESTION, vqa.memory(scene(), None))
        return full, n, kept, vqa.last_image_tokens
    finally:
        vqa.keep_tokens(None)


@pytest.mark.parametrize("mode", ["stride", "topk_norm"])
@pytest.mark.parametrize("ratio", [0.5, 0.25])
def test_the_model_reads_only_the_kept_tokens(vqa, mode, ratio):
    full, n, kept, k = _full_and_kept(vqa, TokenKeep(mode, ratio))
    assert k == math.ceil(n * ratio) and n > k
    assert kept["input_ids"].shape[1] == full["input_ids"].shape[1] - (n - k)
    (features,) = kept["mm_encoder_outputs"]["image"].pooler_output
    assert features.shape[0] == k
    hidden, logits = prompt_state(vqa.model, kept)
    assert hidden.shape[0] == kept["input_ids"].shape[1] and torch.isfinite(logits).all()


def test_all_tokens_kept_gives_the_full_prompts_logits(vqa):
    full, n, kept, k = _full_and_kept(vqa, TokenKeep("stride", 1.0))
    assert k == n and torch.equal(kept["input_ids"].cpu(), full["input_ids"])
    torch.testing.assert_close(prompt_state(vqa.model, kept)[1], prompt_state(vqa.model, full)[1],
                               atol=1e-5, rtol=1e-5)


def test_topk_norm_keeps_the_largest_norm_tokens(vqa):
    _, n, kept, k = _full_and_kept(vqa, TokenKeep("topk_norm", 0.25))
    pixels = vqa.encode(QUESTION, vqa.memory(scene(), None))["pixel_values"]
    with torch.no_grad():
        (all_feats,) = vqa.model.model.get_image_features(pixel_values=pixels, return_dict=True).pooler_output
    top = torch.topk(all_feats.norm(dim=-1), k).indices.sort().values
    (features,) = kept["mm_encoder_outputs"]["image"].pooler_output
    torch.testing.assert_close(features, all_feats[top])


def test_generation_and_option_scoring_run_on_the_pruned_prompt(vqa):
    vqa.keep_tokens(TokenKeep("stride", 0.5))
    try:
        assert isinstance(vqa.answer(scene(), QUESTION, max_new_tokens=3), str)
        scores = vqa.score_options(scene(), QUESTION, OPTIONS)
        assert len(scores) == len(OPTIONS) and all(math.isfinite(s) for s in scores)
    finally:
        vqa.keep_tokens(None)


def _ask(tmp_path, capsys, name: str, *flags: str, action: str = "coarse", tiny_llava: bool = True):
    """``seal ask`` on the test scene with the forced ``action`` and ``flags``; ``(cost, answer events)``
    of its trace (``tiny_llava``: the cached tiny LLaVA and its layout, else the shipped models)."""
    image, ann = write_scene(tmp_path)
    trace = tmp_path / name
    model = [f"--models.vqa_path={cached_tiny_vlm('llava')}", f"--vwm.crop_side_px={VWM['crop_side_px']}",
             f"--vwm.view_side_px={VWM['view_side_px']}", "--agent.max_new_tokens=4"] if tiny_llava else []
    argv = ["ask", "--image", image, "--annotation", ann, *model, "--localizer", "oracle", "--question", QUESTION,
            "--options", *OPTIONS, "--policy", f"always_{action}", "--force-action", action, "--quiet", *flags,
            "--trace-dir", trace]
    assert main([str(a) for a in argv]) == 0, capsys.readouterr().err
    record = json.loads((trace / "trace.json").read_text())
    return record["cost"], [e for e in record["events"] if e["type"] == "answer"]


def test_the_ledger_books_the_tokens_in_the_input(tmp_path, capsys):
    booked = {}
    for ratio in (1.0, 0.25):
        cost, (answer,) = _ask(tmp_path, capsys, f"r{ratio}", "--vision_budget.pruning_mode=stride",
                               f"--vision_budget.pruning_ratio={ratio}")
        booked[ratio] = cost["vision_tokens_global"]
        assert booked[ratio] == answer["prompt_image_tokens"]
    assert booked[0.25] == math.ceil(booked[1.0] * 0.25) < booked[1.0]


def test_a_family_whose_tokens_cannot_be_removed_is_refused():
    qwen = VQAModel.load(cached_tiny_vlm("qwen2_5_vl"))
    with pytest.raises(ConfigError, match="vision_budget.pruning_mode.*qwen2_5_vl"):
        qwen.keep_tokens(TokenKeep("stride", 0.5))
    with pytest.raises(ConfigError, match="pruning_ratio"):
        TokenKeep("stride", 0.0)


@pytest.mark.parametrize("action", ["coarse", "full"])
def test_the_ledger_books_the_entropy_selections_tokens(tmp_path, capsys, action):
    """``pruning_mode: entropy`` keeps a number of tokens that depends on the pixels: the ledger books what
    the model read, for the global view and for each crop."""
    booked = {}
    for alpha in (1.0, 0.3):
        cost, answers = _ask(tmp_path, capsys, f"{action}{alpha}", "--vision_budget.pruning_mode=entropy",
                             f"--vision_budget.entropy.alpha={alpha}", action=action)
        booked[alpha] = cost["vision_tokens_global"] + cost["vision_tokens_crops"]
        assert booked[alpha] == answers[-1]["prompt_image_tokens"]
    assert booked[0.3] < booked[1.0]


def test_the_ledger_books_the_merged_tokens(tmp_path, capsys):
    """``pruning_mode: merger`` (the shipped merger of the shipped VQA model): the model reads
    ``ceil(N * ratio)`` merged tokens per image, as booked."""
    booked = {}
    for mode, ratio in (("none", 1.0), ("merger", 0.25)):
        cost, (answer,) = _ask(tmp_path, capsys, mode, f"--vision_budget.pruning_mode={mode}",
                               f"--vision_budget.pruning_ratio={ratio}", tiny_llava=False)
        booked[mode] = cost["vision_tokens_global"]
        assert booked[mode] == answer["prompt_image_tokens"]
    assert booked["merger"] == math.ceil(booked["none"] * 0.25) < booked["none"]


def test_the_ledger_books_what_the_pruned_layers_read(tmp_path, capsys):
    """``pruning_mode: pruners`` (the shipped pruners inside the shipped VQA model): every token enters, the
    layers from the head's on read ``ceil(N * ratio)``; the ledger books the mean over the layers, which is
    what the hard-pruned forward's layers really read."""
    from seal.vqa.pruners import keep_counts

    booked = {}
    for mode in ("none", "pruners"):
        cost, (answer,) = _ask(tmp_path, capsys, mode, f"--vision_budget.pruning_mode={mode}",
                               "--vision_budget.pruning_ratio=0.25", tiny_llava=False)
        booked[mode] = cost["vision_tokens_global"]
        assert booked[mode] == answer["prompt_image_tokens"]
    n = booked["none"]
    assert booked["pruners"] == math.ceil((n + 3 * keep_counts([[n]], 0.25)[0]) / 4) < n  # head before layer 1 of 4
    # ... and that is what the hard-pruned forward's layers read
    vqa = VQAModel.load("checkpoints/vqa_tiny")
    vqa.keep_tokens(TokenKeep("pruners", 0.25, pruners_path="checkpoints/pruners_tiny"))
    from PIL import Image

    image, _ = write_scene(tmp_path)
    enc = vqa.encode(QUESTION, vqa.memory(Image.open(image).convert("RGB"), None))
    state = vqa.pruned.prefill(enc)
    assert state.vision_read[0] == n and set(state.vision_read[1:]) == {keep_counts([[n]], 0.25)[0]}
    assert vqa.last_image_tokens == math.ceil(sum(state.vision_read) / len(state.vision_read))


def test_merger_then_pruners_book_what_the_layers_read(tmp_path, capsys):
    """``merger+pruners``: the merger to ``ceil(N * ratio)``, then the pruners keep their trained half of
    those from layer 1 of 4; booked = the mean over the layers = what the answer's prompt reports."""
    from seal.vqa.pruners import keep_counts

    cost, (answer,) = _ask(tmp_path, capsys, "t", "--vision_budget.pruning_mode=merger+pruners",
                           "--vision_budget.pruning_ratio=0.5", tiny_llava=False)
    m = math.ceil(64 * 0.5)  # the shipped VQA model: 64 tokens per image
    expected = math.ceil((m + 3 * keep_counts([[m]], 0.5)[0]) / 4)
    assert cost["vision_tokens_global"] == answer["prompt_image_tokens"] == expected
