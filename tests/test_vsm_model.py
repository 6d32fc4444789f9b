"""VSMModel: <LOC> handling, LoRA placement, teacher-forced <LOC> state, training steps, strict
save / load round trip."""

import json

import numpy as np
import pytest
import torch

from seal.core.geometry import Frame
from search.vsm.config import VSMConfig
from search.vsm.losses import VSMCriterion, VSMTargets
from search.vsm.model import VSMModel
from search.vsm.targets import box_targets_cxcywh, heatmap_target
from seal.core.errors import InputError
from seal.models.tokenizer import CHAT_TEMPLATE, LOC_TOKEN
from tests.test_vsm_fixtures import HEADS, perturb_adapter, random_patches, tiny_backbone, tiny_vsm


@pytest.fixture(scope="module")
def vsm():
    model = tiny_vsm()
    perturb_adapter(model)
    return model.eval()


def test_loc_token_is_added_when_the_tokenizer_lacks_it():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = ["<unk>", "<s>", "</s>", "<pad>", "<image>", "USER:", "ASSISTANT:", "Please", "locate", "the", "red",
             "star", "in", "this", "image.", "Sure,", "."]
    raw = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    raw.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok = PreTrainedTokenizerFast(tokenizer_object=raw, unk_token="<unk>", bos_token="<s>", eos_token="</s>",
                                  pad_token="<pad>", extra_special_tokens=["<image>"])
    tok.chat_template = CHAT_TEMPLATE
    assert LOC_TOKEN not in tok.get_vocab()
    llava, processor = tiny_backbone(tok)
    model = VSMModel.build(llava, processor, VSMConfig(**HEADS))
    assert model.loc_token_id == len(words) and len(model.tokenizer) == len(words) + 1
    assert model.backbone.get_input_embeddings().weight.shape[0] == len(words) + 1
    enc = model.prompts(["detect"], ["red star"], with_reply=False)
    assert enc["input_ids"][0, -1] == model.loc_token_id
    with torch.no_grad():
        feats = model.encode_images(model.preprocess(random_patches(1)))
        out = model(enc["input_ids"], enc["attention_mask"], feats)
    assert out.heatmap.shape == (1, 16, 16)


def test_lora_only_on_the_language_model_and_the_right_parts_train(vsm):
    trainable = [n for n, p in vsm.named_parameters() if p.requires_grad]
    in_llava = [n for n in trainable if n.startswith("llava.")]
    assert in_llava and all("lora_" in n or "trainable_tokens_delta" in n for n in in_llava)
    assert not any("vision_tower" in n for n in trainable)
    assert any("language_model" in n and "q_proj.lora_A" in n for n in trainable)
    assert any("lm_head" in n for n in in_llava) and any("embed_tokens" in n for n in in_llava)
    assert any(n.startswith("heatmap_decoder.mask_decoder.") for n in trainable)
    assert any(n.startswith("box_decoder.box_head.") for n in trainable)
    vision_q = vsm.backbone.model.vision_tower.encoder.layers[0].self_attn.q_proj
    assert type(vision_q) is torch.nn.Linear


def test_loc_state_is_the_same_for_training_and_inference_rows(vsm):
    feats = vsm.encode_images(vsm.preprocess(random_patches(2, seed=4)))
    targets = ["red star", "a dotted blue circle"]
    with torch.no_grad():
        train = vsm.prompts(["detect", "context"], targets, with_reply=True)
        infer = vsm.prompts(["detect", "context"], targets, with_reply=False)
        a = vsm(train["input_ids"], train["attention_mask"], feats, train["labels"])
        b = vsm(infer["input_ids"], infer["attention_mask"], feats)
    assert torch.allclose(a.loc_state, b.loc_state, atol=1e-5)
    assert torch.allclose(a.heatmap, b.heatmap, atol=1e-4) and torch.allclose(a.boxes, b.boxes, atol=1e-5)
    assert a.lm_logits.shape[0] == int((train["labels"] != -100).sum()) and b.lm_logits is None
    assert not torch.allclose(a.loc_state[0], a.loc_state[1])  # different prompts, different states


def test_loc_state_before_reads_the_position_predicting_loc():
    model = tiny_vsm(loc_state="before").eval()
    enc = model.prompts(["detect"], ["red star"], with_reply=False)
    with torch.no_grad():
        feats = model.encode_images(model.preprocess(random_patches(1)))
        hidden = model.hidden_states(enc["input_ids"], enc["attention_mask"], feats)
        out = model(enc["input_ids"], enc["attention_mask"], feats)
    last = enc["input_ids"].shape[1] - 1  # the inference row ends with <LOC>
    assert torch.equal(out.loc_state[0], hidden[0, last - 1])


def _training_batch(model):
    """Two 32 px patches of a 64x64 image: the left one holds a red square, the right one not."""
    img = np.full((64, 64, 3), 128, dtype=np.uint8)
    img[8:24, 6:22] = (220, 20, 20)
    regions = [(0.0, 0.0, 32.0, 64.0), (32.0, 0.0, 64.0, 64.0)]  # tall: letterboxed left/right
    patches, heat, boxes = [], [], []
    for region in regions:
        frame = Frame(region, 32, 32, letterbox=True)
        x0, y0, x1, y1 = (int(v) for v in region)
        from PIL import Image

        crop = Image.fromarray(img[y0:y1, x0:x1]).resize((16, 32))
        canvas = Image.new("RGB", (32, 32), model.fill_color)
        canvas.paste(crop, (8, 0))
        patches.append(np.asarray(canvas))
        heat.append(heatmap_target(frame, model.heatmap_size, boxes_xyxy=[[6, 8, 22, 24]]))
        boxes.append(torch.from_numpy(box_targets_cxcywh(frame, [[6, 8, 22, 24]])))
    assert len(boxes[0]) == 1 and len(boxes[1]) == 0 and heat[0].sum() > 0 and heat[1].sum() == 0
    targets = VSMTargets(heatmaps=torch.from_numpy(np.stack(heat)), boxes=boxes)
    return model.preprocess(patches), model.prompts(["detect", "detect"], ["red square"] * 2, True), targets


def test_a_few_optimizer_steps_lower_the_total_loss():
    torch.manual_seed(0)
    model = tiny_vsm().train()
    pixels, enc, targets = _training_batch(model)
    criterion = VSMCriterion()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=3e-3)
    history = []
    for _ in range(8):
        out = model(enc["input_ids"], enc["attention_mask"], labels=enc["labels"], pixel_values=pixels)
        losses = criterion(out, targets)
        opt.zero_grad()
        losses["total"].backward()
        opt.step()
        history.append({k: v.item() for k, v in losses.items()})
    first, last = history[0], history[-1]
    assert all(np.isfinite(h["total"]) for h in history)
    assert last["total"] < 0.8 * first["total"], [h["total"] for h in history]
    for term in ("lm", "heatmap_bce", "box_focal", "box_l1"):  # every head learns
        assert last[term] < first[term], (term, first[term], last[term])
    lora_b = [p for n, p in model.named_parameters() if "lora_B" in n]
    assert any(p.abs().sum() > 0 for p in lora_b)  # gradients reached the adapter


def test_save_load_round_trip_gives_identical_outputs(vsm, tmp_path):
    out_dir = vsm.save_pretrained(tmp_path / "vsm")
    meta = json.loads((out_dir / "vsm_config.json").read_text())
    assert meta["format"] == "seal-vsm" and meta["loc_token_id"] == vsm.loc_token_id
    assert meta["vsm"]["decoder_dim"] == HEADS["decoder_dim"]
    adapter_bytes = (out_dir / "adapter" / "adapter_model.safetensors").stat().st_size
    backbone_bytes = sum(f.stat().st_size for f in (out_dir / "backbone").glob("*.safetensors"))
    assert adapter_bytes < backbone_bytes / 4  # adapter-only save
    loaded = VSMModel.from_pretrained(out_dir)
    assert not loaded.training and loaded.cfg == vsm.cfg
    pixels = vsm.preprocess(random_patches(3, seed=7))
    enc = vsm.prompts(["detect", "context", "detect"], ["red star", "blue circle", "green square"], False)
    with torch.no_grad():
        a = vsm(enc["input_ids"], enc["attention_mask"], vsm.encode_images(pixels))
        b = loaded(enc["input_ids"], enc["attention_mask"], loaded.encode_images(pixels))
        base = VSMModel.build(*tiny_backbone(), VSMConfig(**HEADS)).eval()
        c = base(enc["input_ids"], enc["attention_mask"], base.encode_images(pixels))
    assert torch.allclose(a.heatmap, b.heatmap, atol=1e-5) and torch.allclose(a.boxes, b.boxes, atol=1e-6)
    assert torch.allclose(a.box_logits, b.box_logits, atol=1e-5) and torch.allclose(a.quality, b.quality, atol=1e-5)
    assert not torch.allclose(a.loc_state, c.loc_state, atol=1e-3)  # the adapter was really restored
    resumed = VSMModel.from_pretrained(out_dir, trainable=True)
    trainable = {n for n, p in resumed.named_parameters() if p.requires_grad}
    assert resumed.training and any("lora_B" in n for n in trainable) and any("box_decoder" in n for n in trainable)
    assert not any(p.requires_grad for n, p in loaded.named_parameters())


def test_loading_is_strict(vsm, tmp_path):
    import shutil

    from safetensors.torch import load_file, save_file

    good = vsm.save_pretrained(tmp_path / "good")
    with pytest.raises(InputError, match="checkpoint directory"):
        VSMModel.from_pretrained(tmp_path / "missing")

    def variant(name):
        d = tmp_path / name
        shutil.copytree(good, d)
        return d

    d = variant("no_adapter")
    shutil.rmtree(d / "adapter")
    with pytest.raises(InputError, match="adapter is missing"):
        VSMModel.from_pretrained(d)
    d = variant("short_decoders")
    tensors = load_file(str(d / "decoders.safetensors"))
    tensors.pop(next(k for k in tensors if k.startswith("box_decoder.")))
    save_file(tensors, str(d / "decoders.safetensors"))
    with pytest.raises(InputError, match="box_decoder weights do not match"):
        VSMModel.from_pretrained(d)
    d = variant("resized")
    meta = json.loads((d / "vsm_config.json").read_text())
    meta["vsm"]["decoder_dim"] = 64
    (d / "vsm_config.json").write_text(json.dumps(meta))
    with pytest.raises(InputError, match="do not match"):
        VSMModel.from_pretrained(d)
    d = variant("version")
    meta["vsm"]["decoder_dim"], meta["version"] = HEADS["decoder_dim"], 99
    (d / "vsm_config.json").write_text(json.dumps(meta))
    with pytest.raises(InputError, match="version"):
        VSMModel.from_pretrained(d)
    d = variant("unknown_field")
    meta["version"], meta["vsm"]["mystery"] = 1, 3
    (d / "vsm_config.json").write_text(json.dumps(meta))
    with pytest.raises(InputError, match=r"vsm_config.json: .*unknown fields \['mystery'\]"):
        VSMModel.from_pretrained(d)
    d = variant("extra_adapter")
    tensors = load_file(str(d / "adapter" / "adapter_model.safetensors"))
    tensors["base_model.model.bogus.lora_A.weight"] = torch.zeros(2, 2)
    save_file(tensors, str(d / "adapter" / "adapter_model.safetensors"))
    with pytest.raises(InputError, match="adapter weights do not match"):
        VSMModel.from_pretrained(d)
