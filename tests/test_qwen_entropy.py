"""The entropy mode on a Qwen2.5-VL VQA model (seed 003: the selection drives the patch sizes): through
:class:`seal.vqa.VQAModel` every path (greedy answer with the KV cache, option likelihoods, letters, the
refusal probability) reads exactly the kept tokens at their explicit M-RoPE positions; with every smallest
patch kept it is the unpruned model; the cached continuation equals a no-cache recomputation on the same
positions; the ledger books the tokens in the model's input; impossible grids and other families are
refused with one ConfigError naming the field. A tiny random Qwen2.5-VL of the real classes
(``tests/vlm_fixtures.py``)."""

import json
import math
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch

from seal.cli.main import main
from seal.core.errors import ConfigError
from seal.vqa import VQAModel
from seal.vqa.model import extend_prompt
from seal.vqa.prompts import letter_question
from seal.vqa.refusal import REFUSAL_PREFIX
from seal.vqa.token_keep import TokenKeep
from tests.test_agent_fixtures import OPTIONS, QUESTION, STAR_XYWH, VWM, scene, write_scene
from tests.vlm_fixtures import cached_tiny_vlm
from vwm.budget import VisionBudget, VisionBudgetConfig
from vwm.entropy import EntropyConfig, select_merged_grid
from vwm.layout import VisualWorkingMemory, VWMConfig, build_prompt

EVERY = EntropyConfig("v1", thresholds=(0.0, 0.0))
"""Thresholds nothing falls below: every L3 and every L2 patch splits, every smallest patch is a token."""
HALF = EntropyConfig("budget", alpha=0.5)
"""Budget round(0.5 * 16) = 8 of a 4 x 4 merged grid: base 1, k = 2 splits -> 7 tokens."""
CROPS = dict(crop_side_px=56, view_side_px=VWM["view_side_px"])
"""56 px crops: an 8 x 8 patch grid, a 4 x 4 merged grid (the cascade needs multiples of 4)."""


@pytest.fixture(scope="module")
def qwen():
    return VQAModel.load(cached_tiny_vlm("qwen2_5_vl"), vwm_config=VWMConfig(**CROPS))


def _memory(vqa):
    """The scene's global view and two crops: three images in one prompt."""
    vwm = VisualWorkingMemory(scene(), config=vqa.vwm_config)
    x, y, w, h = STAR_XYWH
    vwm.add_target("striped star", (x - 20, y - 20, x + w + 20, y + h + 20), 0.9)
    vwm.add_target("dotted square", (20, 240, 84, 304), 0.8)
    return vwm


def _greedy_without_cache(vqa, enc, steps: int) -> list[int]:
    """Reference decoding: each step one full forward of prompt + tokens so far (no cache), the new tokens at
    :func:`extend_prompt`'s positions, argmax; stops after a stop token as ``generate`` does."""
    tokens: list[int] = []
    with torch.no_grad():
        for _ in range(steps):
            ids = torch.tensor([tokens], dtype=torch.long).reshape(1, -1)
            logits = vqa.model(**extend_prompt(dict(enc), ids)).logits[0, -1]
            tokens.append(int(logits.argmax()))
            if tokens[-1] in vqa.chat.stop_ids:
                break
    return tokens


def _uncached_logprobs(vqa, enc, reply: list[int]) -> "torch.Tensor":
    """log p of each ``reply`` token after the prompt ``enc``: one full forward of prompt + reply, no cache,
    the reply at :func:`extend_prompt`'s positions."""
    ids = torch.tensor([reply])
    with torch.no_grad():
        logits = vqa.model(**extend_prompt(dict(enc), ids)).logits[0].float()
    p = enc["input_ids"].shape[1]
    return torch.log_softmax(logits[p - 1:-1], -1).gather(-1, ids[0, :, None]).squeeze(-1)


def _all_paths(vqa, vwm=None):
    """What every reading path gives for the scene's question (answer, forced-prefix answer, summed option
    log-likelihoods, letter probabilities, refusal probability) and the image tokens of the last prompt."""
    image = None if vwm is not None else scene()
    answer = vqa.answer(image, QUESTION, vwm, max_new_tokens=5)
    forced = vqa.answer(image, QUESTION, vwm, max_new_tokens=3, prefix="The color")
    scores = vqa.score_options(image, QUESTION, OPTIONS, vwm, reduce="sum")
    _, letters = vqa.choose_letter(image, QUESTION, OPTIONS, vwm)
    refusal = vqa.refusal_probability(image, QUESTION, vwm)
    return answer, forced, scores, letters, refusal, vqa.last_image_tokens


@pytest.mark.parametrize("with_crops", [False, True])
def test_every_patch_kept_is_the_unpruned_model(qwen, with_crops):
    vwm = _memory(qwen) if with_crops else None
    qwen.keep_tokens(None)
    full_enc = qwen.encode(QUESTION, vwm or qwen.memory(scene(), None))
    full = _all_paths(qwen, vwm)
    qwen.keep_tokens(TokenKeep("entropy", entropy=EVERY))
    try:
        kept_enc = qwen.encode(QUESTION, vwm or qwen.memory(scene(), None))
        kept = _all_paths(qwen, vwm)
    finally:
        qwen.keep_tokens(None)
    # the same tokens at the model's own positions, the image features passed pre-encoded
    assert torch.equal(kept_enc["input_ids"].cpu(), full_enc["input_ids"]) and "pixel_values" not in kept_enc
    own, _ = qwen.model.model.get_rope_index(full_enc["input_ids"], full_enc["mm_token_type_ids"],
                                             image_grid_thw=full_enc["image_grid_thw"],
                                             attention_mask=full_enc["attention_mask"])
    assert torch.equal(kept_enc["position_ids"].cpu(), own)
    assert kept[0] == full[0] and kept[1] == full[1] and kept[1].startswith("The color")
    torch.testing.assert_close(torch.tensor(kept[2]), torch.tensor(full[2]), atol=1e-4, rtol=0)
    torch.testing.assert_close(torch.tensor(kept[3]), torch.tensor(full[3]), atol=1e-4, rtol=0)
    assert abs(kept[4] - full[4]) < 1e-4
    assert kept[5] == full[5] == 16 * (3 if with_crops else 1)


def test_merging_shortens_the_prompt_by_the_merged_tokens(qwen):
    vwm = _memory(qwen)
    qwen.keep_tokens(None)
    full = qwen.encode(QUESTION, vwm)
    n = [int(t * h * w) // 4 for t, h, w in full["image_grid_thw"].tolist()]  # N_i: merged tokens per image
    qwen.keep_tokens(TokenKeep("entropy", entropy=HALF))
    try:
        kept = qwen.encode(QUESTION, vwm)
    finally:
        qwen.keep_tokens(None)
    pixels, start, k = full["pixel_values"].numpy(), 0, []
    for grid in full["image_grid_thw"].tolist():
        k.append(select_merged_grid(pixels[start:], grid, HALF, qwen.processor.image_processor.image_mean,
                                    qwen.processor.image_processor.image_std, 7, 2, 2).stats.kept_tokens)
        start += grid[0] * grid[1] * grid[2]
    assert n == [16, 16, 16] and k == [7, 7, 7]
    assert kept["input_ids"].shape[1] == full["input_ids"].shape[1] - sum(a - b for a, b in zip(n, k))
    assert qwen.last_image_tokens == int((kept["input_ids"] == qwen.image_token_id).sum()) == sum(k)
    assert [f.shape[0] for f in kept["mm_encoder_outputs"]["image"].pooler_output] == k
    assert kept["position_ids"].shape == (3, 1, kept["input_ids"].shape[1])


def test_cached_continuations_follow_the_explicit_positions(qwen):
    """With merging the prompt is shorter than its positions reach: the continuation must start at
    ``max(position) + 1``; generation with the cache, cached option scoring and letters all equal a full
    no-cache forward on those positions (and a continuation counted from the prompt's length would not)."""
    vwm = _memory(qwen)
    qwen.keep_tokens(TokenKeep("entropy", entropy=HALF))
    read = []  # image tokens each path's prompt held
    try:
        enc = qwen.encode(QUESTION, vwm)
        letter_enc = qwen.encode(letter_question(QUESTION, OPTIONS), vwm)
        answer = qwen.answer(None, QUESTION, vwm, max_new_tokens=6)
        read.append(qwen.last_image_tokens)
        scores = qwen.score_options(None, QUESTION, OPTIONS, vwm, reduce="sum")
        read.append(qwen.last_image_tokens)
        _, letters = qwen.choose_letter(None, QUESTION, OPTIONS, vwm)
        read.append(qwen.last_image_tokens)
        refusal = qwen.refusal_probability(None, QUESTION, vwm)
        read.append(qwen.last_image_tokens)
    finally:
        qwen.keep_tokens(None)
    assert read == [21] * 4  # 3 images x 7 kept tokens, in every path
    length, reach = enc["input_ids"].shape[1], int(enc["position_ids"].max()) + 1
    assert reach < length  # the delta is not zero: positions matter
    tokens = _greedy_without_cache(qwen, enc, 6)
    assert answer == qwen.tokenizer.decode(tokens, skip_special_tokens=True).strip()
    with torch.no_grad():
        cached = qwen.model.generate(**enc, max_new_tokens=6, do_sample=False, eos_token_id=qwen.chat.stop_ids,
                                     pad_token_id=qwen.pad_id)
    assert cached[0, length:].tolist() == tokens
    for option, score in zip(OPTIONS, scores):
        assert abs(score - float(_uncached_logprobs(qwen, enc, qwen.reply_ids(option)).sum())) < 1e-4
    letter_scores = torch.stack([_uncached_logprobs(qwen, letter_enc, qwen.reply_ids(letter, add_eos=False)).sum()
                                 for letter in "AB"])
    torch.testing.assert_close(torch.tensor(letters), torch.softmax(letter_scores, -1), atol=1e-4, rtol=0)
    with torch.no_grad():
        last = qwen.model(**enc).logits[0, -1].float()
    first = qwen.reply_ids(REFUSAL_PREFIX, add_eos=False)[0]
    assert abs(refusal - float(torch.softmax(last, -1)[first])) < 1e-6
    # the check can fail: the same reply placed from the prompt's length reads other logits
    reply = torch.tensor([qwen.reply_ids(OPTIONS[0])])
    naive = dict(extend_prompt(dict(enc), reply))
    steps = torch.arange(reply.shape[1]) + length
    naive["position_ids"] = torch.cat([enc["position_ids"], steps.view(1, 1, -1).expand(3, 1, -1)], dim=-1)
    with torch.no_grad():
        wrong = qwen.model(**naive).logits[0, length:].float()
        right = qwen.model(**extend_prompt(dict(enc), reply)).logits[0, length:].float()
    assert (wrong - right).abs().max() > 1e-3


def _ask(tmp_path, capsys, name, *flags, action="coarse"):
    image, ann = write_scene(tmp_path)
    trace = tmp_path / name
    argv = ["ask", "--image", image, "--annotation", ann, f"--models.vqa_path={cached_tiny_vlm('qwen2_5_vl')}",
            "--localizer", "oracle", "--search.max_nodes=6", f"--vwm.crop_side_px={CROPS['crop_side_px']}",
            f"--vwm.view_side_px={CROPS['view_side_px']}", "--agent.max_new_tokens=4", "--question", QUESTION,
            "--options", *OPTIONS, "--policy", f"always_{action}", "--force-action", action, "--quiet",
            *flags, "--trace-dir", trace]
    assert main([str(a) for a in argv]) == 0, capsys.readouterr().err
    record = json.loads((trace / "trace.json").read_text())
    return record["cost"], [e for e in record["events"] if e["type"] == "answer"]


def test_the_ledger_books_the_tokens_in_the_input(qwen, tmp_path, capsys):
    """``seal ask`` on the Qwen2.5-VL fixture: the global view's booked tokens = the image tokens of the
    answer's prompt, for every patch kept and for a budget that merges; and the budget's count of any view
    (a crop too) is the sum of K_i the model reads."""
    booked = {}
    for alpha in (1.0, 0.3):
        cost, answers = _ask(tmp_path, capsys, f"a{alpha}", "--vision_budget.pruning_mode=entropy",
                             f"--vision_budget.entropy.alpha={alpha}")
        booked[alpha] = cost["vision_tokens_global"] + cost["vision_tokens_crops"]
        assert booked[alpha] == answers[-1]["prompt_image_tokens"]
    assert booked[1.0] == 16 and booked[0.3] == 4  # round(0.3 * 16) = 5: base 1 + one split of 3
    vwm = _memory(qwen)
    budget = VisionBudget(VisionBudgetConfig(pruning_mode="entropy", entropy=HALF), qwen.processor)
    qwen.keep_tokens(TokenKeep("entropy", entropy=HALF))
    try:
        qwen.encode(QUESTION, vwm)
    finally:
        qwen.keep_tokens(None)
    _, images = build_prompt(QUESTION, vwm)  # the images the processor receives: the view, then the crops
    assert len(images) == 3
    assert [budget.tokens_for(image) for image in images] == [7, 7, 7]
    assert sum(budget.tokens_for(image) for image in images) == qwen.last_image_tokens


def test_impossible_grids_and_other_families_are_refused(qwen):
    small = VQAModel.load(cached_tiny_vlm("qwen2_5_vl"), vwm_config=VWMConfig(crop_side_px=28, view_side_px=28))
    small.keep_tokens(TokenKeep("entropy", entropy=HALF))
    with pytest.raises(ConfigError, match=r"^vision_budget\.pruning_mode: entropy .*multiples of 4.*2x2"):
        small.answer(scene(), QUESTION, max_new_tokens=2)
    budget = VisionBudget(VisionBudgetConfig(pruning_mode="entropy"), qwen.processor)
    with pytest.raises(ConfigError, match=r"vision_budget\.pruning_mode: .*multiples of 4.*2x2"):
        budget.tokens_for(scene().resize((28, 28)))
    with pytest.raises(ConfigError, match=r"vision_budget\.pruning_mode: .*'qwen2_5_vl'.*entropy only"):
        qwen.keep_tokens(TokenKeep("stride", 0.5))
    onevision = VQAModel.load(cached_tiny_vlm("llava_onevision"))
    with pytest.raises(ConfigError, match=r"vision_budget\.pruning_mode: entropy removes .*'llava_onevision'"):
        onevision.keep_tokens(TokenKeep("entropy", entropy=HALF))
    assert math.isfinite(qwen.refusal_probability(scene(), QUESTION))  # the refusals left it unpruned
