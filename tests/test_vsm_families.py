"""The search model on each VLM family's base (LLaVA-1.5, LLaVA-OneVision, Qwen2.5-VL): build, forward,
save / load, ``seal search`` and ``seal merge-lora`` on tiny random checkpoints of the real classes
(tests/vlm_fixtures.py), and the family adapters' parity with the models' own image paths."""

import numpy as np
import pytest
import torch
from PIL import Image

from search.vsm.base import load_base
from search.vsm.config import VSMConfig
from search.vsm.model import VSMModel
from tests.cli_helpers import last_json, run_cli
from tests.test_vsm_fixtures import HEADS, perturb_adapter
from tests.vlm_fixtures import FAMILIES, cached_tiny_vlm

TARGETS = ["red circle", "a dotted blue square"]


@pytest.fixture(scope="module", params=FAMILIES)
def family(request):
    return request.param


@pytest.fixture(scope="module")
def built(family, tmp_path_factory):
    """``(vsm, its saved directory)``: a VSM built on the family's tiny base, adapter perturbed."""
    model, processor = load_base(cached_tiny_vlm(family))
    vsm = VSMModel.build(model, processor, VSMConfig(**HEADS))
    perturb_adapter(vsm)
    vsm.eval()
    out = vsm.save_pretrained(tmp_path_factory.mktemp(f"vsm_{family}"))
    return vsm, out


def _patches(vsm, n=2, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (vsm.input_size, vsm.input_size, 3), dtype=np.uint8) for _ in range(n)]


@torch.no_grad()
def _outputs(vsm, seed=0):
    feats = vsm.encode_images(vsm.preprocess(_patches(vsm, seed=seed)))
    enc = vsm.prompts(["detect", "context"], TARGETS, with_reply=True)
    return vsm(enc["input_ids"], enc["attention_mask"], feats, enc["labels"])


def test_forward_shapes_and_image_token_booking(built, family):
    vsm, _ = built
    s, g, n = vsm.input_size, vsm.grid_size, vsm.image_tokens
    pixels = vsm.preprocess(_patches(vsm))
    assert pixels.shape == (2, 3, s, s)
    with torch.no_grad():
        feats = vsm.encode_images(pixels)
    assert feats.vision.shape == (2, vsm.family.vision_dim, g, g)
    assert feats.projected.shape == (2, n, vsm.backbone.config.text_config.hidden_size)
    for with_reply in (True, False):
        enc = vsm.prompts(["detect", "context"], TARGETS, with_reply=with_reply)
        per_row = (enc["input_ids"] == vsm.backbone.config.image_token_id).sum(dim=1)
        assert per_row.tolist() == [n, n]  # the search's booking per patch = image tokens in the LM input
    out = _outputs(vsm)
    assert out.heatmap.shape == (2, 4 * g, 4 * g) and out.boxes.shape[:2] == out.box_logits.shape
    for t in (out.heatmap, out.quality, out.boxes, out.box_logits, out.loc_state, out.lm_logits):
        assert torch.isfinite(t).all()
    assert not torch.allclose(out.loc_state[0], out.loc_state[1])
    expected = {"llava": (32, 4, 16), "llava_onevision": (28, 4, 17), "qwen2_5_vl": (56, 8, 16)}[family]
    assert (s, g, n) == expected


def test_lora_sits_on_the_language_model_only(built):
    vsm, _ = built
    lora = [n for n, p in vsm.llava.named_parameters() if "lora_A" in n]
    assert lora and all(".language_model." in n for n in lora)
    assert {n.split(".lora_A")[0].rsplit(".", 1)[-1] for n in lora} == {"q_proj", "v_proj"}
    trainable = [n for n, p in vsm.llava.named_parameters() if p.requires_grad]
    assert all("lora_" in n or "trainable_tokens" in n for n in trainable)
    assert any("embed_tokens" in n and "trainable_tokens" in n for n in trainable)


def test_save_and_load_give_identical_outputs(built):
    vsm, out = built
    loaded = VSMModel.from_pretrained(out)
    assert type(loaded.family) is type(vsm.family) and loaded.loc_token_id == vsm.loc_token_id
    a, b = _outputs(vsm, seed=3), _outputs(loaded, seed=3)
    for name in ("heatmap", "boxes", "box_logits", "loc_state", "lm_logits"):
        assert torch.allclose(getattr(a, name), getattr(b, name), atol=1e-5), name


def test_seal_search_runs_on_the_family_vsm(built, tmp_path, capsys):
    _, out = built
    img = Image.new("RGB", (300, 200), (128, 128, 128))
    img.paste((220, 20, 20), (40, 30, 80, 70))
    path = tmp_path / "scene.png"
    img.save(path)
    rc, stdout, err = run_cli(["search", "--model", out, "--image", path, "--target", "red circle", "--json",
                               "--quiet", "--search.max_nodes=4"], capsys)
    assert rc == 0, err
    res = last_json(stdout)
    assert res["localizer"] == "vsm" and res["target"] == "red circle" and res["model_calls"] >= 1
    assert res["localizer_stats"]["patches_encoded"] >= 1


def test_seal_search_on_a_plain_base_names_the_training_command(family, tmp_path, capsys):
    base = cached_tiny_vlm(family)
    img = tmp_path / "x.png"
    Image.new("RGB", (64, 64)).save(img)
    capsys.readouterr()  # the fixture's own build output
    rc, _, err = run_cli(["search", "--model", base, "--image", img, "--target", "red circle"], capsys)
    assert rc == 2 and len(err.strip().splitlines()) == 1
    assert "plain VLM checkpoint" in err and f"seal train vsm --base {base}" in err
    assert "vsm_config.json" not in err and "manifest" not in err
    # the same base named inside a config file (the config loader reads the search profile first)
    (tmp_path / "models.yaml").write_text(f"models:\n  vsm_path: {base}\n")
    rc, _, err = run_cli(["search", "--config", tmp_path / "models.yaml", "--image", img, "--target", "red circle"],
                         capsys)
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "plain VLM checkpoint" in err


def test_merge_lora_keeps_the_outputs(built, tmp_path, capsys):
    vsm, out = built
    merged_dir = tmp_path / "merged"
    rc, stdout, err = run_cli(["merge-lora", "--vsm", out, "--out", merged_dir, "--json"], capsys)
    assert rc == 0, err
    report = last_json(stdout)
    assert report["parity_ok"]
    plain, _ = load_base(merged_dir)  # a plain checkpoint of the base's own family
    assert plain.config.model_type == vsm.backbone.config.model_type and type(plain) is type(vsm.backbone)
    del plain
    merged = VSMModel.from_pretrained(merged_dir)
    assert merged.is_merged and type(merged.family) is type(vsm.family)
    a, b = _outputs(vsm, seed=5), _outputs(merged, seed=5)
    for name in ("heatmap", "boxes", "box_logits", "loc_state", "lm_logits"):
        assert torch.allclose(getattr(a, name), getattr(b, name), atol=1e-4), name


# ---- the adapters against the models' own image paths ------------------------------------------
def test_qwen_patches_round_trip_the_image_processor():
    from search.vsm.families import family_for

    model, processor = load_base(cached_tiny_vlm("qwen2_5_vl"))
    fam = family_for(model.config, processor)
    patches = [np.random.default_rng(i).integers(0, 256, (fam.input_size, fam.input_size, 3), dtype=np.uint8)
               for i in range(2)]
    flat = processor.image_processor(images=patches, return_tensors="pt")["pixel_values"]
    assert torch.equal(fam.flatten(fam.preprocess(patches)), flat)


@pytest.mark.parametrize("side", [0, 42])
@torch.no_grad()
def test_qwen_adapter_matches_the_models_own_forward(side):
    """Merged tokens, the pre-merge grid (re-merged) and the LM's hidden states equal the model's own
    image path (the processor's prompt + pixel values, the model's own M-RoPE positions); 42 px: a
    merged grid of 3, not a multiple of the attention window (2), so windows are padded."""
    from search.vsm.families import family_for

    model, processor = load_base(cached_tiny_vlm("qwen2_5_vl"))
    fam = family_for(model.config, processor, side)
    patch = np.random.default_rng(7).integers(0, 256, (fam.input_size, fam.input_size, 3), dtype=np.uint8)
    text = processor.apply_chat_template([{"role": "user", "content": [
        {"type": "image"}, {"type": "text", "text": "Please locate the red circle in this image."}]}],
        add_generation_prompt=True, tokenize=False)
    inputs = processor(text=[text], images=[patch], return_tensors="pt")
    own = model.model(**inputs)
    vision, projected = fam.encode(model, fam.preprocess([patch]))
    m, c = fam.merge, vision.shape[1]
    g = fam.grid_size
    blocks = vision.reshape(1, c, g // m, m, g // m, m).permute(0, 2, 4, 3, 5, 1).reshape(-1, c)  # merge-block order
    assert torch.allclose(model.model.visual.merger(blocks), projected[0], atol=1e-5)
    mine = fam.hidden_states(model, inputs["input_ids"], inputs["attention_mask"], projected)
    assert int((inputs["input_ids"] == fam.image_token_id).sum()) == fam.image_tokens
    assert torch.allclose(mine, own.last_hidden_state, atol=1e-5)


@pytest.mark.parametrize("layers", [-1, [-2, -1]])
@torch.no_grad()
def test_onevision_adapter_is_the_models_single_tile_layout(layers):
    """A single tile's tokens (+ the newline) as the model itself packs a base-resolution image; with a
    list of feature layers the decoders' grid holds them all (channels concatenated)."""
    from transformers import LlavaOnevisionConfig, LlavaOnevisionForConditionalGeneration

    from search.vsm.families import family_for

    base = cached_tiny_vlm("llava_onevision")
    model, processor = load_base(base)
    if layers != model.config.vision_feature_layer:
        config = LlavaOnevisionConfig.from_pretrained(base)
        config.vision_feature_layer = layers
        torch.manual_seed(0)
        model = LlavaOnevisionForConditionalGeneration(config).eval()
    fam = family_for(model.config, processor)
    patches = [np.random.default_rng(i).integers(0, 256, (fam.input_size, fam.input_size, 3), dtype=np.uint8)
               for i in range(2)]
    pixels = fam.preprocess(patches)  # (2, 3, S, S)
    own = model.model.get_image_features(pixel_values=pixels, image_sizes=torch.tensor([[fam.input_size] * 2] * 2),
                                         batch_num_images=torch.tensor([2]), return_dict=True)
    grid, projected = fam.encode(model, pixels)
    assert torch.allclose(projected, torch.stack(list(own.pooler_output)), atol=1e-6)
    width = model.config.vision_config.hidden_size
    assert grid.shape == (2, width * (1 if isinstance(layers, int) else len(layers)), fam.grid_size, fam.grid_size)
    assert fam.vision_dim == grid.shape[1] and fam.image_tokens == projected.shape[1] == fam.grid_size ** 2 + 1

def test_loc_is_added_to_a_chatml_base_without_shrinking_its_padded_vocabulary():
    """A Qwen2.5-VL base whose tokenizer lacks ``<LOC>`` and whose embedding has spare rows (as the
    real checkpoints do): ``<LOC>`` takes the next id, the embedding keeps its rows, the model runs."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import (PreTrainedTokenizerFast, Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration,
                              Qwen2_5_VLProcessor)

    from seal.models.tokenizer import LOC_TOKEN

    base = cached_tiny_vlm("qwen2_5_vl")
    own = Qwen2_5_VLProcessor.from_pretrained(base)
    words = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>",
             "<|video_pad|>", "system", "user", "assistant", "You", "are", "a", "helpful", "assistant.", "Please",
             "locate", "the", "red", "circle", "in", "this", "image.", "Sure,", "."]
    raw = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<|endoftext|>"))
    raw.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok = PreTrainedTokenizerFast(tokenizer_object=raw, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                  extra_special_tokens=words[:7])
    processor = Qwen2_5_VLProcessor(image_processor=own.image_processor, video_processor=own.video_processor,
                                    tokenizer=tok, chat_template=own.chat_template)
    config = Qwen2_5_VLConfig.from_pretrained(base)
    config.text_config.vocab_size = len(words) + 8  # spare rows, as Qwen's 151936 > its tokenizer's length
    config.text_config.pad_token_id, config.text_config.bos_token_id = 0, None
    config.text_config.eos_token_id = words.index("<|im_end|>")
    for name, token in (("image_token_id", "<|image_pad|>"), ("video_token_id", "<|video_pad|>"),
                        ("vision_start_token_id", "<|vision_start|>"), ("vision_end_token_id", "<|vision_end|>")):
        setattr(config, name, words.index(token))
    torch.manual_seed(0)
    model = Qwen2_5_VLForConditionalGeneration(config).eval()
    assert LOC_TOKEN not in tok.get_vocab()
    vsm = VSMModel.build(model, processor, VSMConfig(**HEADS)).eval()
    assert vsm.loc_token_id == len(words) and LOC_TOKEN in vsm.tokenizer.all_special_tokens
    assert "<|im_end|>" in vsm.tokenizer.all_special_tokens  # the family's special tokens are kept
    assert vsm.backbone.get_input_embeddings().weight.shape[0] == len(words) + 8
    out = _outputs(vsm)
    assert torch.isfinite(out.heatmap).all() and torch.isfinite(out.loc_state).all()


def test_the_python_api_refuses_a_plain_base_the_same_way(family):
    from search.vsm.localizer import load_vsm_localizer
    from seal.core.errors import InputError

    base = cached_tiny_vlm(family)
    for load in (load_vsm_localizer, VSMModel.from_pretrained):
        with pytest.raises(InputError, match="plain VLM checkpoint.*seal train vsm --base"):
            load(base)


def test_a_patch_side_the_family_cannot_take_is_a_config_error():
    from search.vsm.families import family_for
    from seal.core.errors import ConfigError

    for family, bad in (("llava", 64), ("qwen2_5_vl", 50), ("qwen2_5_vl", 140)):
        model, processor = load_base(cached_tiny_vlm(family))
        with pytest.raises(ConfigError, match="vsm.input_size"):
            family_for(model.config, processor, bad)
    model, processor = load_base(cached_tiny_vlm("qwen2_5_vl"))
    fam = family_for(model.config, processor, 42)  # 3 merged tokens a side, inside 28..56 px
    assert (fam.input_size, fam.grid_size, fam.image_tokens) == (42, 6, 9)


def test_the_vlm_families_are_the_vsm_adapters():
    """The plain-base check (torch-free) names the loader's families; the VSM adapts each of them."""
    from search.vsm.families import FAMILIES
    from seal.models.vlm import VLM_MODEL_TYPES

    assert set(VLM_MODEL_TYPES) == set(FAMILIES)


def test_seal_ask_full_searches_with_the_family_vsm(built, family, tmp_path, capsys):
    """The whole agent on one family: the family's tiny base answers (FULL, targets listed), the search model
    built on that base searches them, and the ledger books the search's patches at the VSM's image tokens."""
    import json

    vsm, out = built
    img = Image.new("RGB", (300, 200), (128, 128, 128))
    img.paste((220, 20, 20), (40, 30, 80, 70))
    path = tmp_path / "scene.png"
    img.save(path)
    trace = tmp_path / "trace"
    rc, _, err = run_cli(["ask", "--image", path, "--question", "What is the color of the circle?", "--options",
                          "red", "blue", f"--models.vqa_path={cached_tiny_vlm(family)}", f"--models.vsm_path={out}",
                          "--policy", "always_full", "--force-action", "full", "--agent.max_new_tokens=4",
                          "--vwm.view_side_px=64", "--vwm.crop_side_px=56", "--search.max_nodes=3",
                          "--hit_check.enabled=false", "--quiet", "--trace-dir", trace], capsys)
    assert rc == 0, err
    record = json.loads((trace / "trace.json").read_text())
    cost = record["cost"]
    assert record["action"] == "full" and cost["search_nodes"] >= 1 and cost["search_calls"] >= 1
    assert cost["vision_tokens_search"] > 0 and cost["vision_tokens_search"] % vsm.image_tokens == 0
