"""The shared tokenizer and tiny LLaVA backbone: build, save, strict load, LoRA round trip."""

import json
import os
import shutil

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch
from PIL import Image

from seal.core.errors import InputError
from seal.models.backbone import TinyBackboneConfig, build_tiny_llava, load_llava, save_llava
from seal.models.tokenizer import (
    IMAGE_TOKEN,
    LOC_TOKEN,
    OPTION_LETTERS,
    SPECIAL_TOKENS,
    chat_prompt,
    encode_reply,
    load_tokenizer,
    save_tokenizer,
    train_tokenizer,
)

CORPUS = [
    "What is the color of the striped star?",
    "Is the blue circle on the left or right side of the dotted square?",
    "The color of the striped star is red.",
    "The blue circle is on the left side of the dotted square.",
] * 4

TINY = dict(text_hidden=32, text_layers=2, text_heads=2, text_intermediate=64, max_positions=512,
            image_size=32, patch_size=8, vision_hidden=32, vision_layers=2, vision_heads=2,
            vision_intermediate=64)


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer(CORPUS, vocab_size=600)


@pytest.fixture(scope="module")
def tiny(tokenizer):
    cfg = TinyBackboneConfig(**TINY)
    model, processor = build_tiny_llava(cfg, tokenizer)
    return cfg, model, processor


@pytest.fixture(scope="module")
def saved(tiny, tmp_path_factory):
    cfg, model, processor = tiny
    return save_llava(model, processor, tmp_path_factory.mktemp("tiny_llava"), cfg)


def _image(color=(200, 30, 30), size=(48, 32)):
    img = Image.new("RGB", size, color)
    img.paste((20, 20, 220), (5, 5, 20, 20))
    return img


# ---- tokenizer -------------------------------------------------------------------------------------

def test_special_tokens_have_fixed_ids_and_are_not_split(tokenizer):
    for i, name in enumerate(SPECIAL_TOKENS):
        assert tokenizer.convert_tokens_to_ids(name) == i
    ids = tokenizer(f"{IMAGE_TOKEN}{IMAGE_TOKEN}red {LOC_TOKEN}", add_special_tokens=True)["input_ids"]
    assert ids[:3] == [tokenizer.bos_token_id, 4, 4]
    assert 5 in ids and tokenizer.unk_token_id not in ids


def test_tokenizer_training_is_deterministic(tokenizer):
    again = train_tokenizer(CORPUS, vocab_size=600)
    assert again.get_vocab() == tokenizer.get_vocab()
    text = "Is the striped star left of the blue circle? (B) no"
    assert again(text)["input_ids"] == tokenizer(text)["input_ids"]


def test_tokenizer_decodes_exactly_even_unseen_words(tokenizer):
    text = "A zebra-like Ünïcode object at [0.125, 0.500] is here!"
    ids = tokenizer(text)["input_ids"]
    assert tokenizer.unk_token_id not in ids
    assert tokenizer.decode(ids, skip_special_tokens=True) == text
    digits = tokenizer.tokenize("0.125")
    assert digits == ["0", ".", "1", "2", "5"]  # digits split one by one


def test_chat_template_and_reply_encoding(tokenizer):
    assert chat_prompt(tokenizer, "<image>\nWhat?") == "USER: <image>\nWhat? ASSISTANT:"
    reply = encode_reply(tokenizer, "  red ")
    assert reply[-1] == tokenizer.eos_token_id and tokenizer.bos_token_id not in reply
    assert tokenizer.decode(reply, skip_special_tokens=True) == " red"
    for letter in OPTION_LETTERS:  # letter choice compares one next-token logit per letter
        assert len(encode_reply(tokenizer, letter, add_eos=False)) == 1


def test_option_letters_stay_single_tokens_with_a_large_corpus():
    import random

    rng = random.Random(0)
    words = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 9))) for _ in range(3000)]
    texts = [" ".join(rng.choice(words) for _ in range(12)) for _ in range(1500)]
    tokenizer = train_tokenizer(texts, vocab_size=600)
    assert len(tokenizer) == 600  # the budget is exhausted by the corpus ...
    for letter in OPTION_LETTERS:  # ... yet the fixed prompt strings were merged first
        assert len(encode_reply(tokenizer, letter, add_eos=False)) == 1


def test_tokenizer_save_load_round_trip(tokenizer, tmp_path):
    save_tokenizer(tokenizer, tmp_path / "tok")
    loaded = load_tokenizer(tmp_path / "tok")
    text = "USER: <image>\nWhat is the color? ASSISTANT: red</s>"
    assert loaded(text)["input_ids"] == tokenizer(text)["input_ids"]
    assert loaded.chat_template == tokenizer.chat_template
    assert loaded.pad_token_id == tokenizer.pad_token_id == 3
    with pytest.raises(InputError, match="tokenizer.json"):
        load_tokenizer(tmp_path / "nothing")


# ---- backbone -------------------------------------------------------------------------------------

def test_config_validation_and_token_count():
    assert TinyBackboneConfig().image_tokens == 256
    assert TinyBackboneConfig(**TINY).image_tokens == 16
    with pytest.raises(ValueError, match="patch_size"):
        TinyBackboneConfig(image_size=30, patch_size=8)
    with pytest.raises(ValueError, match="text_heads"):
        TinyBackboneConfig(text_hidden=30, text_heads=4)


def test_default_backbone_is_a_few_million_parameters(tokenizer):
    model, _ = build_tiny_llava(TinyBackboneConfig(), tokenizer)
    n = sum(p.numel() for p in model.parameters())
    assert 1_000_000 < n < 8_000_000


def test_image_token_ids_and_processor_expansion_match(tiny, tokenizer):
    cfg, model, processor = tiny
    assert model.config.image_token_id == tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
    assert model.config.text_config.vocab_size == len(tokenizer)
    text = chat_prompt(tokenizer, "<image>\nfirst <image>\nsecond")
    enc = processor(text=[text], images=[_image(), _image(size=(20, 60))], return_tensors="pt")
    assert enc["pixel_values"].shape == (2, 3, cfg.image_size, cfg.image_size)
    assert int((enc["input_ids"] == model.config.image_token_id).sum()) == 2 * cfg.image_tokens
    out = model(**enc)
    assert out.logits.shape == (1, enc["input_ids"].shape[1], len(tokenizer))
    with pytest.raises(ValueError):
        processor(text=[text], images=[_image()], return_tensors="pt")  # 2 placeholders, 1 image


def test_processor_letterboxes_instead_of_cropping(tiny):
    _, _, processor = tiny
    wide = Image.new("RGB", (64, 16), (255, 255, 255))
    px = processor.image_processor(wide, return_tensors="pt")["pixel_values"][0]  # (3, 32, 32)
    mean = torch.tensor(processor.image_processor.image_mean).view(3)
    std = torch.tensor(processor.image_processor.image_std).view(3)
    rgb = px.permute(1, 2, 0) * std + mean  # back to [0, 1]
    assert torch.allclose(rgb[16, 0], torch.ones(3), atol=0.05)  # the whole width is kept (no crop)
    assert torch.allclose(rgb[0, 16], mean, atol=0.02)  # top rows are padding in the CLIP mean colour


def test_save_load_round_trip_gives_identical_logits(tiny, saved, tokenizer):
    _, model, processor = tiny
    loaded, loaded_processor = load_llava(saved)
    assert type(loaded_processor).__name__ == "LlavaProcessor"
    assert json.loads((saved / "backbone.json").read_text())["image_size"] == 32
    text = chat_prompt(tokenizer, "<image>\nWhat is the color of the striped star?")
    enc = processor(text=[text], images=[_image()], return_tensors="pt")
    enc2 = loaded_processor(text=[text], images=[_image()], return_tensors="pt")
    assert torch.equal(enc["input_ids"], enc2["input_ids"])
    assert torch.equal(enc["pixel_values"], enc2["pixel_values"])
    with torch.no_grad():
        assert torch.equal(model(**enc).logits, loaded(**enc2).logits)


def test_load_llava_errors_are_input_errors(saved, tmp_path):
    with pytest.raises(InputError, match="no such model directory"):
        load_llava(tmp_path / "missing")
    (tmp_path / "file.bin").write_bytes(b"x")
    with pytest.raises(InputError, match="found a file"):
        load_llava(tmp_path / "file.bin")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="config.json is missing"):
        load_llava(tmp_path / "empty")
    other = tmp_path / "other"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(InputError, match="'llava'"):
        load_llava(other)
    broken = tmp_path / "broken"
    shutil.copytree(saved, broken)
    config = json.loads((broken / "config.json").read_text())
    config["text_config"]["num_hidden_layers"] = 3  # weights hold only 2 layers
    (broken / "config.json").write_text(json.dumps(config))
    with pytest.raises(InputError, match="do not match"):
        load_llava(broken)


def test_lora_adapter_save_reload_and_merge_match(saved, tokenizer, tmp_path):
    from peft import LoraConfig, PeftModel, get_peft_model

    base, processor = load_llava(saved)
    peft_model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    torch.manual_seed(1)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.normal_(0.0, 0.5)  # LoRA B starts at zero; make the adapter matter
    text = chat_prompt(tokenizer, "<image>\nWhat is the color of the striped star?")
    enc = processor(text=[text], images=[_image()], return_tensors="pt")
    plain, _ = load_llava(saved)
    with torch.no_grad():
        adapted = peft_model(**enc).logits
        assert not torch.allclose(adapted, plain(**enc).logits, atol=1e-4)
    peft_model.save_pretrained(tmp_path / "adapter")
    reloaded = PeftModel.from_pretrained(load_llava(saved)[0], tmp_path / "adapter").eval()
    with torch.no_grad():
        assert torch.allclose(reloaded(**enc).logits, adapted, atol=1e-5)
        merged = reloaded.merge_and_unload()
        assert not any("lora" in n for n, _ in merged.named_parameters())
        assert torch.allclose(merged(**enc).logits, adapted, atol=1e-4)
