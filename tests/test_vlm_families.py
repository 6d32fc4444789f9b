"""Any local llava / LLaVA-OneVision / Qwen2.5-VL checkpoint works as the VQA model: tiny random
checkpoints of each family (``tests/vlm_fixtures.py``, the real classes and chat templates) through
the VQA wrapper (prompts, replies, exact cached scoring, letters, text pass, refusal listing), the
loader, and the real ``seal ask`` / ``seal eval`` CLI, with the ledger's vision tokens equal to the
image tokens in the model's own ``input_ids``."""

import argparse
import hashlib
import json
import math
import os
import shutil

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch

from seal.agent.kv import cached_text_pass, score_options_from_cache
from seal.cli.main import main
from seal.core.errors import InputError
from seal.models.chat import chat_format, user_message
from seal.models.tokenizer import encode_reply
from seal.vqa import REFUSAL_PREFIX, VQAModel, build_training_example, collate
from seal.vqa.model import extend_prompt
from seal.vqa.scoring import reply_token_logprobs
from tests.test_agent_fixtures import (FOUND_ANSWER, OPTIONS, QUESTION, REFUSAL, STAR_XYWH, TARGETS, VWM, scene,
                                       write_scene)
from tests.vlm_fixtures import FAMILIES, TOKENIZER_DIR, build_tiny_vlm, cached_tiny_vlm
from vwm.budget import VisionBudget, VisionBudgetConfig
from vwm.layout import VisualWorkingMemory, VWMConfig

CLASSES = {"llava": "LlavaForConditionalGeneration", "llava_onevision": "LlavaOnevisionForConditionalGeneration",
           "qwen2_5_vl": "Qwen2_5_VLForConditionalGeneration"}
END_TOKEN = {"llava": "</s>", "llava_onevision": "<|im_end|>", "qwen2_5_vl": "<|im_end|>"}
SMALL = dict(crop_side_px=28, view_side_px=28)
"""Views of the trained-refusal test: one OneVision tile, the fewest Qwen2.5-VL tokens."""
PROMPT_MARKS = {"llava": ("USER: <image>\n", " ASSISTANT:"),
                "llava_onevision": ("<|im_start|>user\n<image>\n", "<|im_end|>\n<|im_start|>assistant\n"),
                "qwen2_5_vl": ("<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>",
                               "<|im_end|>\n<|im_start|>assistant\n")}


@pytest.fixture(scope="module", params=FAMILIES)
def vqa(request):
    model = VQAModel.load(cached_tiny_vlm(request.param), vwm_config=VWMConfig(**VWM))
    model.family = request.param
    return model


def _memory(vqa):
    vwm = VisualWorkingMemory(scene(), config=vqa.vwm_config)
    x, y, w, h = STAR_XYWH
    vwm.add_target("striped star", (x, y, x + w, y + h), 0.9)
    vwm.add_target("dotted square", (40, 260, 64, 284), 0.8)
    vwm.add_target("green circle", None)
    return vwm


def _uncached(vqa, enc, reply):
    """Reference: one full forward of prompt + reply (images re-encoded), log p of each reply token."""
    ids = torch.tensor([reply])
    with torch.no_grad():
        logits = vqa.model(**extend_prompt(dict(enc), ids)).logits[0].float()
    p = enc["input_ids"].shape[1]
    return torch.log_softmax(logits[p - 1:-1], dim=-1).gather(-1, ids[0].unsqueeze(-1)).squeeze(-1)


# ---- the fixtures -------------------------------------------------------------------------------

@pytest.mark.parametrize("family", FAMILIES)
def test_tiny_checkpoints_are_the_real_classes_and_deterministic(family, tmp_path):
    first = build_tiny_vlm(family, tmp_path / "a", seed=0)
    config = json.loads((first / "config.json").read_text())
    assert config["model_type"] == family and config["architectures"] == [CLASSES[family]]
    assert (first / "chat_template.jinja").is_file() and (first / "processor_config.json").is_file()

    def digest(d):
        return hashlib.sha256((d / "model.safetensors").read_bytes()).hexdigest()

    assert digest(build_tiny_vlm(family, tmp_path / "b", seed=0)) == digest(first)
    assert digest(build_tiny_vlm(family, tmp_path / "c", seed=1)) != digest(first)


# ---- prompts and replies in each checkpoint's own template ---------------------------------------

def test_user_message_splits_the_layout_into_parts_in_order():
    msg = user_message("<image>\nAdditional visual information to focus on:\n<image>\nstar at [0.1]\nWhat?")
    assert msg["content"] == [{"type": "image"},
                              {"type": "text", "text": "Additional visual information to focus on:\n"},
                              {"type": "image"}, {"type": "text", "text": "star at [0.1]\nWhat?"}]
    assert user_message("What?")["content"] == [{"type": "text", "text": "What?"}]


def test_the_prompt_keeps_the_question_and_the_images(vqa):
    head, tail = PROMPT_MARKS[vqa.family]
    prompt = vqa.chat.prompt("<image>\nWhat is the color of the striped star?")
    assert head in prompt and prompt.endswith(tail) and "What is the color of the striped star?" in prompt
    enc = vqa.encode(QUESTION, vqa.memory(scene(), None))
    text = vqa.tokenizer.decode(enc["input_ids"][0])
    assert "What is the color of the striped star?" in text and vqa.last_image_tokens > 0


def test_reply_ids_are_what_the_template_writes_after_the_prompt(vqa):
    ids = vqa.reply_ids("  The color of the striped star is red. ")
    assert vqa.tokenizer.convert_ids_to_tokens(ids[-1]) == END_TOKEN[vqa.family]
    assert vqa.tokenizer.decode(ids[:-1]).strip() == "The color of the striped star is red."
    assert vqa.reply_ids("red", add_eos=False) == ids_without_end(vqa, "red")
    # rendering the whole conversation gives the prompt's tokens then the reply's
    user = user_message("What?")
    reply = {"role": "assistant", "content": [{"type": "text", "text": "red"}]}
    full = vqa.processor.apply_chat_template([user, reply], tokenize=False)
    full_ids = vqa.tokenizer(full.rstrip())["input_ids"]
    prompt_ids = vqa.tokenizer(vqa.chat.prompt("What?"))["input_ids"]
    if vqa.family == "llava":  # llava-1.5-hf writes no </s> after a reply: the eos ends it
        full_ids = full_ids + [vqa.tokenizer.eos_token_id]
    assert full_ids == prompt_ids + vqa.reply_ids("red")


def ids_without_end(vqa, reply):
    return vqa.reply_ids(reply)[:-1]


def test_our_tiny_template_encodes_as_before():
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(TOKENIZER_DIR, local_files_only=True)
    fmt = chat_format(processor)
    for reply in ("red", "  The color of the striped star is red. ", REFUSAL):
        assert fmt.reply_ids(reply) == encode_reply(processor.tokenizer, reply)
        assert fmt.reply_ids(reply, add_eos=False) == encode_reply(processor.tokenizer, reply, add_eos=False)
    assert fmt.prompt("<image>\nWhat?") == "USER: <image>\nWhat? ASSISTANT:"


# ---- the VQA wrapper on each family ---------------------------------------------------------------

def test_prompt_image_tokens_equal_the_budget_count(vqa):
    vwm = _memory(vqa)
    enc = vqa.encode(QUESTION, vwm)
    budget = VisionBudget(VisionBudgetConfig(), vqa.processor)
    crops = [e.crop for e in vwm.entries if e.crop is not None]
    assert len(crops) == 2
    expected = budget.tokens_for(vwm.view()) + sum(budget.tokens_for(c) for c in crops)
    assert vqa.last_image_tokens == int((enc["input_ids"] == vqa.image_token_id).sum()) == expected
    assert budget.tokens_for_size(*vwm.view().size) == budget.tokens_for(vwm.view())


def test_cached_scoring_equals_an_uncached_forward_per_candidate(vqa):
    image, replies = scene(), [vqa.reply_ids(o) for o in OPTIONS]
    # text only, global view + working memory with crops, then text only again (no stale image positions)
    for memory in (None, _memory(vqa), None):
        enc = vqa.encode(QUESTION, memory)
        fast = reply_token_logprobs(vqa.model, enc, replies, vqa.pad_id)
        for got, reply in zip(fast, replies):
            assert torch.allclose(got, _uncached(vqa, enc, reply), atol=1e-4)
    scores = vqa.score_options(image, QUESTION, OPTIONS, _memory(vqa))
    assert len(scores) == 2 and all(math.isfinite(s) and s < 0 for s in scores) and scores[0] != scores[1]


def test_kv_reuse_of_the_text_pass_matches_recomputing(vqa):
    state = cached_text_pass(vqa, QUESTION)
    plain = vqa.text_pass(QUESTION)
    assert state.has_cache
    assert torch.allclose(state.output.last_hidden, plain.last_hidden, atol=1e-4)
    assert torch.allclose(state.output.next_token_logits, plain.next_token_logits, atol=1e-4)
    vqa.encode(QUESTION, _memory(vqa))  # an image prompt in between must not shift the cached positions
    assert score_options_from_cache(vqa, state, OPTIONS) == pytest.approx(vqa.score_options(None, QUESTION, OPTIONS),
                                                                          abs=1e-4)


def test_letters_text_pass_and_refusal_listing_run(vqa):
    image = scene()
    letter, probs = vqa.choose_letter(image, QUESTION, OPTIONS + ["green"], _memory(vqa))
    assert letter in "ABC" and len(probs) == 3 and sum(probs) == pytest.approx(1.0, abs=1e-5)
    out = vqa.text_pass(QUESTION, OPTIONS)
    width, vocab = vqa.hidden_size, vqa.model.get_output_embeddings().out_features
    assert out.pooled.shape == (width,) and out.last_hidden.shape == (width,)
    assert out.next_token_logits.shape == (vocab,) and 0.0 <= out.margin <= 1.0 and len(out.letter_probs) == 2
    assert 0.0 <= vqa.refusal_probability(image, QUESTION) <= 1.0
    listed = vqa.answer(image, QUESTION, max_new_tokens=6, prefix=REFUSAL_PREFIX)
    assert listed.startswith(REFUSAL_PREFIX)
    text, targets = vqa.missing_targets(image, QUESTION, max_new_tokens=4)
    assert isinstance(text, str) and (targets is None or isinstance(targets, list))


def test_training_examples_batch_for_each_family(vqa):
    image = scene()
    examples = [build_training_example(vqa.processor, QUESTION, REFUSAL, vqa.memory(image, None)),
                build_training_example(vqa.processor, QUESTION, FOUND_ANSWER, _memory(vqa)),
                build_training_example(vqa.processor, "Is it red?", "Yes.")]
    reply = vqa.reply_ids(FOUND_ANSWER)
    assert examples[1]["labels"][-len(reply):].tolist() == reply
    batch = collate(examples, vqa.pad_id)
    assert int((batch["input_ids"] == vqa.image_token_id).sum()) == sum(
        int((ex["input_ids"] == vqa.image_token_id).sum()) for ex in examples)
    assert torch.isfinite(vqa.model(**batch).loss)


@pytest.mark.parametrize("family", FAMILIES)
def test_bf16_loading(family):
    vqa = VQAModel.load(cached_tiny_vlm(family), dtype="bf16", vwm_config=VWMConfig(**VWM))
    assert next(vqa.model.parameters()).dtype == torch.bfloat16
    assert all(math.isfinite(s) for s in vqa.score_options(scene(), QUESTION, OPTIONS))


def test_models_dtype_and_device_map_reach_the_vqa_model(scene_files):
    from seal.agent.pipeline import Agent
    from seal.core.errors import ConfigError
    from tests.test_agent_fixtures import make_config

    cfg = make_config(f"models.vqa_path={cached_tiny_vlm('llava_onevision')}", "models.dtype=bf16",
                      "models.device_map=cpu", f"vwm.view_side_px={SMALL['view_side_px']}")
    agent = Agent.from_config(cfg)
    assert next(agent.vqa.model.parameters()).dtype == torch.bfloat16 and agent.vqa.model.device.type == "cpu"
    agent.set_image(scene_files[0], annotation=scene_files[1])
    assert agent.ask(QUESTION, OPTIONS, force_action="coarse").answer in OPTIONS
    for bad, field in (("models.dtype=fp8", "models.dtype"), ("models.device_map=gpu", "models.device_map")):
        with pytest.raises(ConfigError, match=field):
            make_config(bad)


def test_loading_is_strict(tmp_path):
    import shutil

    bad = tmp_path / "qwen"
    shutil.copytree(cached_tiny_vlm("qwen2_5_vl"), bad)
    config = json.loads((bad / "config.json").read_text())
    config["text_config"]["hidden_size"] = 96
    (bad / "config.json").write_text(json.dumps(config))
    with pytest.raises(InputError, match="does not match the weights"):
        VQAModel.load(bad)
    untemplated = tmp_path / "untemplated"
    shutil.copytree(cached_tiny_vlm("llava"), untemplated)
    (untemplated / "chat_template.jinja").unlink()
    with pytest.raises(InputError, match="no chat template"):
        VQAModel.load(untemplated)
    config["model_type"] = "blip"
    (bad / "config.json").write_text(json.dumps(config))
    with pytest.raises(InputError, match="'llava_onevision' or 'qwen2_5_vl', config.json has model_type 'blip'"):
        VQAModel.load(bad)


# ---- through the CLI ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def scene_files(tmp_path_factory):
    return write_scene(tmp_path_factory.mktemp("scene"))


def _ask(vqa_dir, scene_files, trace, *extra):
    image, ann = scene_files
    argv = ["ask", "--image", image, "--annotation", ann, f"--models.vqa_path={vqa_dir}", "--localizer", "oracle",
            "--search.max_nodes=6", f"--vwm.crop_side_px={VWM['crop_side_px']}",
            f"--vwm.view_side_px={VWM['view_side_px']}", "--question", QUESTION, "--options", *OPTIONS,
            "--quiet", "--trace-dir", trace, *extra]
    return main([str(a) for a in argv])


def _booked_and_seen(trace):
    record = json.loads((trace / "trace.json").read_text())
    (answer,) = [e for e in record["events"] if e["type"] == "answer"]
    cost = record["cost"]
    return record, cost["vision_tokens_global"] + cost["vision_tokens_crops"], answer["prompt_image_tokens"]


@pytest.mark.parametrize("family", FAMILIES)
def test_seal_ask_each_action_books_the_image_tokens_the_model_reads(family, scene_files, tmp_path, capsys):
    vqa_dir = cached_tiny_vlm(family)
    view_tokens = VisionBudget(VisionBudgetConfig(), VQAModel.load(vqa_dir).processor).tokens_for_size(
        VWM["view_side_px"], VWM["view_side_px"])
    for action, policy in (("no", "no_vision"), ("coarse", "always_coarse"), ("full", "always_full")):
        trace = tmp_path / action
        assert _ask(vqa_dir, scene_files, trace, "--policy", policy, "--force-action", action,
                    "--agent.max_new_tokens=8") == 0, \
            capsys.readouterr().err
        record, booked, seen = _booked_and_seen(trace)
        assert record["action"] == action and record["answer"] in OPTIONS
        assert booked == seen == (0 if action == "no" else view_tokens)


def _train_refusal(family, out, steps=60):
    """A tiny ``family`` checkpoint taught to list the scene's targets on its global view (``SMALL`` views),
    saved to ``out``."""
    vqa = VQAModel.load(cached_tiny_vlm(family), vwm_config=VWMConfig(**SMALL))
    model = vqa.model
    batch = collate([build_training_example(vqa.processor, QUESTION, REFUSAL, vqa.memory(scene(), None))], vqa.pad_id)
    torch.manual_seed(0)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(steps):
        loss = model(**batch).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    model.save_pretrained(out)
    vqa.processor.save_pretrained(out)
    return out


@pytest.mark.slow
def test_seal_ask_full_searches_and_books_the_crops_it_shows(scene_files, tmp_path, capsys):
    """Qwen2.5-VL (the family whose image positions and token counts differ most from LLaVA's): the crops'
    tokens through the agent; every family's crop count is checked against the budget above."""
    vqa_dir = _train_refusal("qwen2_5_vl", tmp_path / "trained")
    trace = tmp_path / "full"
    assert _ask(vqa_dir, scene_files, trace, "--policy", "always_full", "--json", "--agent.max_new_tokens=16",
                *(f"--vwm.{k}={v}" for k, v in SMALL.items())) == 0
    record, booked, seen = _booked_and_seen(trace)
    assert record["targets"] == TARGETS and record["answer"] in OPTIONS
    assert record["cost"]["vision_tokens_crops"] > 0 and booked == seen
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["cost"] == record["cost"]


def test_a_policy_head_fitted_to_another_model_is_one_line(scene_files, tmp_path, capfd):
    vqa_dir = cached_tiny_vlm("qwen2_5_vl")
    capfd.readouterr()
    assert _ask(vqa_dir, scene_files, tmp_path / "t") == 2  # the default policy: the shipped head
    err = capfd.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(vqa_dir) in err
    assert f"seal train policy --vqa {vqa_dir}" in err


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    from eval.synth.config import SynthConfig
    from eval.synth.generate import generate_benchmark

    out = tmp_path_factory.mktemp("synth")
    generate_benchmark(SynthConfig(n=2, seed=1, split="test", suite="mixed", long_side=480), out)
    return out


@pytest.mark.parametrize("family", FAMILIES)
def test_seal_eval_runs_each_family(family, bench, tmp_path, capsys):
    vqa_dir = cached_tiny_vlm(family)
    out = tmp_path / "out"
    assert main(["eval", "--dataset", "synth", "--path", str(bench), "--output-dir", str(out), "--no-progress",
                 "--limit", "2", f"--models.vqa_path={vqa_dir}", "--models.localizer=oracle",
                 "--agent.max_new_tokens=4", "--search.max_nodes=6", "--policy.baseline_name=always_coarse",
                 f"--vwm.view_side_px={VWM['view_side_px']}"]) == 0
    preds = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines() if line.strip()]
    view_tokens = VisionBudget(VisionBudgetConfig(), VQAModel.load(vqa_dir).processor).tokens_for_size(
        VWM["view_side_px"], VWM["view_side_px"])
    assert len(preds) == 2 and {p["action"] for p in preds} == {"coarse"}
    assert all(p["vision_tokens"] == view_tokens for p in preds)
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["n"] == 2


def test_a_dynamic_resolution_model_reads_coarse_and_full_at_their_own_sizes(scene_files, tmp_path, capsys):
    """Qwen2.5-VL with a pixel range wide enough for the views: the layout pads each global view to its own
    long side (vwm.view_square auto -> own), so FULL costs more tokens than COARSE and each booking equals
    the image tokens in the model's input; the fixed-resolution LLaVA keeps its fixed square."""
    from transformers import AutoProcessor

    wide = tmp_path / "qwen_wide"
    shutil.copytree(cached_tiny_vlm("qwen2_5_vl"), wide)
    processor = AutoProcessor.from_pretrained(wide)
    processor.image_processor.size = {"shortest_edge": processor.image_processor.size["shortest_edge"],
                                      "longest_edge": 512 * 512}
    processor.save_pretrained(wide)
    assert VQAModel.load(wide).vwm_config.view_square == "own"
    assert VQAModel.load(cached_tiny_vlm("llava")).vwm_config.view_square == "fixed"
    booked = {}
    for action, policy in (("coarse", "always_coarse"), ("full", "always_full")):
        trace = tmp_path / action
        assert _ask(wide, scene_files, trace, "--policy", policy, "--force-action", action,
                    "--agent.max_new_tokens=2", "--agent.list_targets_above=1.0") == 0, capsys.readouterr().err
        record, booked[action], seen = _booked_and_seen(trace)
        assert booked[action] == seen and record["action"] == action
    budget = VisionBudget(VisionBudgetConfig(), processor)
    assert booked["coarse"] == budget.tokens_for_size(336, 336)  # the 480x360 scene's coarse view: long side 336
    assert booked["full"] == budget.tokens_for_size(480, 480) > booked["coarse"]  # never upsampled: 480


def test_device_and_dtype_flags_set_the_models_section(capsys):
    """seal ask / eval / search take --dtype, --device and --device-map as shorthands of the models section."""
    from seal.cli.common import model_overrides

    for command in ("ask", "eval", "search"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        text = capsys.readouterr().out
        assert "--dtype" in text and "--device-map" in text and "--device DEV" in text
    args = argparse.Namespace(dtype="bf16", device="cpu", device_map=None)
    assert model_overrides(args) == ['models.device="cpu"', 'models.dtype="bf16"']
