"""The VQA wrapper on a tiny random LLaVA, the training-example builder, and the refusal parser."""

import math
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch
from PIL import Image

from seal.models.backbone import TinyBackboneConfig, build_tiny_llava
from seal.models.tokenizer import encode_reply, train_tokenizer
from seal.vqa import (
    IGNORE_INDEX,
    LETTER_INSTRUCTION,
    REFUSAL_PREFIX,
    VQAModel,
    build_training_example,
    collate,
    encode_prompt,
    format_refusal,
    is_refusal,
    letter_question,
    parse_missing_targets,
)
from seal.vqa.scoring import reply_token_logprobs
from vwm.layout import VisualWorkingMemory, VWMConfig

CORPUS = [
    "What is the color of the striped star?",
    "Is the blue circle on the left or right side of the dotted square?",
    "The color of the striped star is red.",
    "The blue circle is on the left side of the dotted square.",
] * 4
QUESTION = "What is the color of the striped star?"
OPTIONS = ["The color of the striped star is red.", "The color of the striped star is blue.", "green",
           "The blue circle is on the left side of the dotted square."]


@pytest.fixture(scope="module")
def vqa():
    tokenizer = train_tokenizer(CORPUS, vocab_size=600)
    cfg = TinyBackboneConfig(text_hidden=32, text_layers=2, text_heads=2, text_intermediate=64, max_positions=512,
                             image_size=32, patch_size=8, vision_hidden=32, vision_layers=2, vision_heads=2,
                             vision_intermediate=64)
    model, processor = build_tiny_llava(cfg, tokenizer)
    return VQAModel(model, processor, VWMConfig(crop_side_px=32, view_side_px=64))


def _image():
    img = Image.new("RGB", (160, 120), (90, 90, 90))
    img.paste((220, 20, 20), (100, 60, 110, 70))
    img.paste((20, 20, 220), (20, 80, 40, 100))
    return img


def _memory(vqa, image):
    vwm = VisualWorkingMemory(image, config=vqa.vwm_config)
    vwm.add_target("striped star", (100, 60, 110, 70), 0.9)
    vwm.add_target("blue circle", (20, 80, 40, 100), 0.7)
    vwm.add_target("dotted square", None)
    return vwm


def _slow_mean_logprob(vqa, image, question, option, vwm=None):
    """Reference: one full forward per option (image re-encoded), mean log p over reply + </s>."""
    enc = encode_prompt(vqa.processor, question, vqa.memory(image, vwm))
    reply = torch.tensor([encode_reply(vqa.tokenizer, option)])
    ids = torch.cat([enc["input_ids"], reply], dim=1)
    with torch.no_grad():
        logits = vqa.model(input_ids=ids, attention_mask=torch.ones_like(ids),
                           pixel_values=enc.get("pixel_values")).logits[0].float()
    p = enc["input_ids"].shape[1]
    logp = torch.log_softmax(logits[p - 1:-1], dim=-1).gather(-1, reply[0].unsqueeze(-1))
    return float(logp.mean())


# ---- prompts and images ---------------------------------------------------------------------------

def test_prompt_images_match_placeholders_through_the_processor(vqa):
    vwm = _memory(vqa, _image())
    enc = encode_prompt(vqa.processor, QUESTION, vwm)
    assert enc["pixel_values"].shape == (3, 3, 32, 32)  # global view + 2 found crops
    n_image_ids = int((enc["input_ids"] == vqa.model.config.image_token_id).sum())
    assert n_image_ids == 3 * 16
    assert enc["input_ids"][0, 0] == vqa.tokenizer.bos_token_id
    text = vqa.tokenizer.decode(enc["input_ids"][0], skip_special_tokens=True)
    assert text.startswith("USER: \nAdditional visual information") and text.endswith("ASSISTANT:")
    assert "dotted square: not found" in text
    text_only = encode_prompt(vqa.processor, QUESTION, None)
    assert "pixel_values" not in text_only
    assert int((text_only["input_ids"] == vqa.model.config.image_token_id).sum()) == 0


def test_letter_question_format():
    q = letter_question("Which?", ["red one", "blue\n one"])
    assert q.split("\n") == ["Which?", "(A) red one", "(B) blue one", LETTER_INSTRUCTION]
    with pytest.raises(ValueError):
        letter_question("Which?", [])


def test_memory_rejects_an_image_of_another_size(vqa):
    with pytest.raises(ValueError, match="differs"):
        vqa.answer(Image.new("RGB", (10, 10)), QUESTION, _memory(vqa, _image()))


# ---- answering and scoring ------------------------------------------------------------------------

def test_answer_is_a_deterministic_string(vqa):
    image = _image()
    first = vqa.answer(image, QUESTION, max_new_tokens=5)
    assert isinstance(first, str)
    assert vqa.answer(image, QUESTION, max_new_tokens=5) == first
    assert isinstance(vqa.answer(None, QUESTION, max_new_tokens=3), str)
    assert isinstance(vqa.answer(image, QUESTION, _memory(vqa, image), max_new_tokens=3), str)


@pytest.mark.parametrize("with_vwm", [False, True])
def test_score_options_matches_per_option_reference(vqa, with_vwm):
    image = _image()
    vwm = _memory(vqa, image) if with_vwm else None
    scores = vqa.score_options(image, QUESTION, OPTIONS, vwm)
    assert len(scores) == len(OPTIONS) and all(math.isfinite(s) and s < 0 for s in scores)
    reference = [_slow_mean_logprob(vqa, image, QUESTION, opt, vwm) for opt in OPTIONS]
    assert scores == pytest.approx(reference, abs=1e-4)
    assert len(set(round(s, 6) for s in scores)) == len(OPTIONS)  # options differ, scores differ


def test_score_options_text_only_and_single_option(vqa):
    scores = vqa.score_options(None, QUESTION, ["red"])
    assert scores == pytest.approx([_slow_mean_logprob(vqa, None, QUESTION, "red")], abs=1e-4)


def test_choose_letter_returns_the_most_probable_valid_letter(vqa):
    image = _image()
    letter, probs = vqa.choose_letter(image, QUESTION, OPTIONS[:3])
    assert letter in "ABC" and len(probs) == 3
    assert sum(probs) == pytest.approx(1.0, abs=1e-5)
    assert letter == "ABC"[max(range(3), key=probs.__getitem__)]
    # same distribution as scoring each letter as a one-token reply
    enc = encode_prompt(vqa.processor, letter_question(QUESTION, OPTIONS[:3]), vqa.memory(image, None))
    letters = [encode_reply(vqa.tokenizer, x, add_eos=False) for x in "ABC"]
    logps = torch.stack([lp.sum() for lp in reply_token_logprobs(vqa.model, enc, letters, 3)])
    assert probs == pytest.approx(torch.softmax(logps, 0).tolist(), abs=1e-5)


def test_choose_letter_handles_multi_token_letters(vqa, monkeypatch):
    import seal.vqa.model as vqa_model

    prefix = vqa.tokenizer(" the", add_special_tokens=False)["input_ids"]

    def two_token_letters(tokenizer, reply, add_eos=True):  # e.g. a tokenizer without " A" merges
        return prefix + encode_reply(tokenizer, reply, add_eos)

    monkeypatch.setattr(vqa_model, "encode_reply", two_token_letters)
    letter, probs = vqa.choose_letter(None, QUESTION, OPTIONS[:3])
    enc = encode_prompt(vqa.processor, letter_question(QUESTION, OPTIONS[:3]), None)
    seqs = [two_token_letters(vqa.tokenizer, x, add_eos=False) for x in "ABC"]
    logps = torch.stack([lp.sum() for lp in reply_token_logprobs(vqa.model, enc, seqs, 3)])
    assert probs == pytest.approx(torch.softmax(logps, 0).tolist(), abs=1e-5)
    assert letter == "ABC"[int(logps.argmax())]


def test_text_pass_shapes_and_ranges(vqa):
    out = vqa.text_pass(QUESTION)
    d, v = vqa.model.config.text_config.hidden_size, len(vqa.tokenizer)
    assert out.pooled.shape == (d,) and out.last_hidden.shape == (d,) and out.next_token_logits.shape == (v,)
    assert 0.0 < out.entropy <= math.log(v) + 1e-4
    assert 0.0 <= out.margin <= 1.0 and out.letter_probs is None
    probs = torch.softmax(out.next_token_logits, 0)
    assert out.margin == pytest.approx(float(probs.topk(2).values[0] - probs.topk(2).values[1]), abs=1e-6)
    other = vqa.text_pass("Is the blue circle on the left?")
    assert not torch.allclose(out.pooled, other.pooled)
    with_options = vqa.text_pass(QUESTION, OPTIONS[:2])
    assert len(with_options.letter_probs) == 2 and sum(with_options.letter_probs) == pytest.approx(1.0, abs=1e-5)
    assert with_options.letter_probs == pytest.approx(vqa.choose_letter(None, QUESTION, OPTIONS[:2])[1], abs=1e-5)


# ---- training examples ----------------------------------------------------------------------------

def test_training_example_masks_the_prompt(vqa):
    image = _image()
    vwm = _memory(vqa, image)
    ex = build_training_example(vqa.processor, QUESTION, "red", vwm)
    prompt = encode_prompt(vqa.processor, QUESTION, vwm)["input_ids"][0]
    reply = encode_reply(vqa.tokenizer, "red")
    p = prompt.shape[0]
    assert torch.equal(ex["input_ids"][:p], prompt) and ex["input_ids"][p:].tolist() == reply
    assert (ex["labels"][:p] == IGNORE_INDEX).all() and ex["labels"][p:].tolist() == reply
    assert ex["pixel_values"].shape[0] == 3
    text_only = build_training_example(vqa.processor, "Is it red?", "Yes.")
    assert text_only["pixel_values"] is None
    batch = collate([ex, text_only], vqa.tokenizer.pad_token_id)
    n = text_only["input_ids"].shape[0]
    assert batch["input_ids"].shape == (2, ex["input_ids"].shape[0])
    assert batch["pixel_values"].shape[0] == 3
    assert (batch["attention_mask"][1, n:] == 0).all() and (batch["labels"][1, n:] == IGNORE_INDEX).all()
    assert (batch["input_ids"][1, n:] == vqa.tokenizer.pad_token_id).all()
    assert torch.isfinite(vqa.model(**batch).loss)


def test_a_few_optimizer_steps_lower_the_loss_and_teach_the_answer():
    tokenizer = train_tokenizer(CORPUS, vocab_size=600)
    cfg = TinyBackboneConfig(text_hidden=32, text_layers=2, text_heads=2, text_intermediate=64, max_positions=512,
                             image_size=32, patch_size=8, vision_hidden=32, vision_layers=2, vision_heads=2,
                             vision_intermediate=64)
    model, processor = build_tiny_llava(cfg, tokenizer)
    vqa = VQAModel(model, processor, VWMConfig(crop_side_px=32, view_side_px=64))
    image = _image()
    answer = format_refusal(["striped star"])
    batch = collate([build_training_example(processor, QUESTION, answer,
                                            VisualWorkingMemory(image, config=vqa.vwm_config))],
                    tokenizer.pad_token_id)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model.train()
    losses = []
    for _ in range(40):
        loss = model(**batch).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    model.eval()
    assert losses[-1] < 0.2 * losses[0]
    generated = vqa.answer(image, QUESTION, max_new_tokens=40)
    assert parse_missing_targets(generated) == ["striped star"]  # the learned refusal round-trips


# ---- refusal parsing ------------------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    (REFUSAL_PREFIX + " striped star, blue circle.", ["striped star", "blue circle"]),
    # tokenizer-style spacing and lower case
    ("sorry , i can not answer the question . some visual information about the following objects is "
     "missing or unclear : striped star , blue circle .", ["striped star", "blue circle"]),
    # wording slips: cannot / objects are; ";" lets names hold commas
    ("SORRY, I CANNOT ANSWER THE QUESTION. Some visual information about the following objects are missing "
     "or unclear: the red car; the blue, shiny bus.", ["red car", "blue, shiny bus"]),
    # quoted names with commas, duplicates (case-insensitive), empty items
    (REFUSAL_PREFIX + ' "salt, pepper shaker", the red cup, Red Cup, , .', ["salt, pepper shaker", "red cup"]),
    # oxford "and", and text after the sentence is ignored
    (REFUSAL_PREFIX + " red car, blue bus, and green bike. I will now search.", ["red car", "blue bus", "green bike"]),
    # bullet list
    (REFUSAL_PREFIX + "\n- red car\n- the blue bus\n\nThanks", ["red car", "blue bus"]),
    # over-long junk item dropped
    (REFUSAL_PREFIX + " a very long name that has far too many words in it to be an object, dog.", ["dog"]),
    # typos: fuzzy match of the prefix
    ("Sorry, I cannt answr the question. Some visual informaton about the folowing objects is missing or "
     "unclear: cat", ["cat"]),
    # preceded by other text, no trailing period
    ("Hmm. " + REFUSAL_PREFIX + " 'the mug'", ["mug"]),
    # an unbalanced quote does not swallow the list
    (REFUSAL_PREFIX + ' "unbalanced, dog, cat.', ["unbalanced", "dog", "cat"]),
    # a refusal that lists nothing
    (REFUSAL_PREFIX, []),
    (REFUSAL_PREFIX + " .", []),
])
def test_parse_missing_targets(text, expected):
    assert parse_missing_targets(text) == expected
    assert is_refusal(text)


@pytest.mark.parametrize("text", [
    "The color of the striped star is red.",
    "B",
    "",
    "Some information is missing: the answer is red.",
    "I can not see it clearly, sorry.",
])
def test_normal_answers_are_not_refusals(text):
    assert parse_missing_targets(text) is None
    assert not is_refusal(text)


def test_format_refusal_round_trips():
    names = ["striped star", "blue circle"]
    assert format_refusal(names) == REFUSAL_PREFIX + " striped star, blue circle."
    assert parse_missing_targets(format_refusal(names)) == names
    with_comma = ["salt, pepper", "cup"]
    assert format_refusal(with_comma).endswith(" salt, pepper; cup.")
    assert parse_missing_targets(format_refusal(with_comma)) == with_comma
    with pytest.raises(ValueError):
        format_refusal(["  "])


def test_targets_are_put_in_question_order():
    from seal.vqa.refusal import in_question_order

    q = "Is the Purple  star on the left or right side of the orange hexagon?"
    assert in_question_order(["orange hexagon", "purple star"], q) == ["purple star", "orange hexagon"]
    # names the question does not contain keep their order, after the named ones
    assert in_question_order(["green ring", "orange hexagon", "blue dot"], q) == ["orange hexagon", "green ring",
                                                                                  "blue dot"]
    assert in_question_order([], q) == []
