"""``seal convert seal-vqa|seal-vsm``: tiny random checkpoints written with EXACTLY the original key
names and layout of ``craigwu/seal_vqa_7b`` / ``craigwu/seal_vsm_7b`` (penghao-wu/vstar:
``LLaVA/llava/model/llava_search_arch.py``, ``multimodal_projector/{builder,perceiver}.py``,
``VisualSearch/model/VSM.py``, ``owlvit/owlvit.py``, ``segment_anything/modeling/mask_decoder.py``),
as 2 sharded ``.bin`` files with an index or as safetensors, converted, reloaded with our loaders,
and compared with the original computation rebuilt from transformers / segment-anything modules."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from seal.core.errors import InputError


torch.manual_seed(0)
WORDS = ("a chat between curious user human and an artificial intelligence assistant the gives helpful "
         "detailed polite answers to questions s user assistant please locate in this image sure what is "
         "color of cup red blue according common sense knowledge possible visual cues most likely location "
         "appear on table").split()
VISION = dict(hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=1, image_size=32,
              patch_size=16, hidden_act="quick_gelu", layer_norm_eps=1e-5)
LM = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, rms_norm_eps=1e-6,
          max_position_embeddings=512, tie_word_embeddings=False)


# ---- tiny original checkpoints ---------------------------------------------------------------------

def write_tokenizer(path: Path, extra: tuple[str, ...] = ()) -> "object":
    """A word-level fast tokenizer (``<unk>``, ``<s>``, ``</s>`` + WORDS + punctuation), ``extra`` added
    as the reference adds its tokens (``[LOC]`` plain, ``<im_start>``/``<im_end>`` special)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    words = ["<unk>", "<s>", "</s>", *dict.fromkeys(WORDS), ",", ".", "?", ":", "'", "[", "]"]
    vocab = {t: i for i, t in enumerate(words)}
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    core.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    tok = PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<s>", eos_token="</s>", unk_token="<unk>")
    if "[LOC]" in extra:
        tok.add_tokens(["[LOC]"])
    specials = [t for t in extra if t != "[LOC]"]
    if specials:
        tok.add_tokens(specials, special_tokens=True)
    tok.save_pretrained(str(path))
    return tok


def llama_state(vocab: int, seed: int) -> tuple[dict, "object"]:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    lm = LlamaForCausalLM(LlamaConfig(vocab_size=vocab, **LM)).eval()
    state = dict(lm.state_dict())
    state["model.layers.0.self_attn.rotary_emb.inv_freq"] = torch.ones(4)  # persisted by transformers 4.31
    return state, lm


def clip_state(seed: int) -> tuple[dict, "object"]:
    from transformers import CLIPVisionConfig, CLIPVisionModel

    torch.manual_seed(seed)
    clip = CLIPVisionModel(CLIPVisionConfig(**VISION)).eval()
    pre = "model.vision_tower.vision_tower.vision_model."
    state = {pre + k.removeprefix("vision_model."): v for k, v in clip.state_dict().items()}
    state[pre + "embeddings.position_ids"] = torch.arange(5)[None]
    return state, clip


def perceiver_state(prefix: str, dim: int, out: int, depth: int = 2, heads: int = 16, dim_head: int = 4,
                    latents: int = 32) -> dict:
    """``nn.Sequential(LayerNorm, PerceiverResampler, Linear)`` keys as the reference builder names them."""
    inner, r = heads * dim_head, torch.randn
    s = {prefix + "0.weight": 1 + 0.1 * r(dim), prefix + "0.bias": 0.1 * r(dim),
         prefix + "1.latents": r(latents, dim), prefix + "1.media_pos_emb": r(1, 1, dim),
         prefix + "1.norm.weight": 1 + 0.1 * r(dim), prefix + "1.norm.bias": 0.1 * r(dim),
         prefix + "2.weight": 0.2 * r(out, dim), prefix + "2.bias": 0.1 * r(out)}
    for i in range(depth):
        p = f"{prefix}1.layers.{i}."
        for ln in ("norm_media", "norm_latents"):
            s[p + f"0.{ln}.weight"], s[p + f"0.{ln}.bias"] = 1 + 0.1 * r(dim), 0.1 * r(dim)
        s[p + "0.to_q.weight"] = 0.2 * r(inner, dim)
        s[p + "0.to_kv.weight"] = 0.2 * r(2 * inner, dim)
        s[p + "0.to_out.weight"] = 0.2 * r(dim, inner)
        s[p + "1.0.weight"], s[p + "1.0.bias"] = 1 + 0.1 * r(dim), 0.1 * r(dim)
        s[p + "1.1.weight"] = 0.2 * r(4 * dim, dim)
        s[p + "1.3.weight"] = 0.2 * r(dim, 4 * dim)
    return s


def write_shards(path: Path, state: dict, fmt: str) -> None:
    """``bin``: 2 shards + ``pytorch_model.bin.index.json``; ``safetensors``: 2 shards + its index."""
    keys = sorted(state)
    halves = [keys[: len(keys) // 2], keys[len(keys) // 2:]]
    weight_map = {}
    for i, part in enumerate(halves, 1):
        if fmt == "bin":
            name = f"pytorch_model-0000{i}-of-00002.bin"
            torch.save({k: state[k].contiguous() for k in part}, path / name)
        else:
            from safetensors.torch import save_file

            name = f"model-0000{i}-of-00002.safetensors"
            save_file({k: state[k].contiguous() for k in part}, str(path / name))
        weight_map.update({k: name for k in part})
    index = "pytorch_model.bin.index.json" if fmt == "bin" else "model.safetensors.index.json"
    (path / index).write_text(json.dumps({"metadata": {"total_size": 0}, "weight_map": weight_map}))


def make_seal_vqa(path: Path, fmt: str = "bin") -> dict:
    """A tiny ``craigwu/seal_vqa_7b``: returns the reference modules and the raw state."""
    path.mkdir(parents=True)
    tok = write_tokenizer(path)
    lm_state_, lm = llama_state(len(tok), 1)
    tower_state, clip = clip_state(2)
    r = torch.randn
    state = {**lm_state_, **tower_state, "model.mm_projector.weight": 0.2 * r(32, 64),
             "model.mm_projector.bias": 0.1 * r(32), **perceiver_state("model.mm_projector_object.", 64, 32)}
    write_shards(path, state, fmt)
    config = {"model_type": "llava_search", "architectures": ["LlavaSearchLlamaForCausalLM"], "vocab_size": len(tok),
              "num_hidden_layers": 2, "hidden_size": 32, "intermediate_size": 64, "num_attention_heads": 4,
              "rms_norm_eps": 1e-6, "max_position_embeddings": 512, "mm_hidden_size": 64,
              "mm_vision_tower": "openai/clip-vit-large-patch14", "mm_vision_select_layer": -2,
              "mm_vision_select_feature": "patch", "mm_projector_type": "linear",
              "object_mm_projector_type": "perceiver", "image_aspect_ratio": "pad", "mm_use_im_start_end": False,
              "tie_word_embeddings": False, "torch_dtype": "float32", "bos_token_id": 1, "eos_token_id": 2,
              "pad_token_id": 0}
    (path / "config.json").write_text(json.dumps(config))
    return {"lm": lm, "clip": clip, "state": state, "tokenizer": tok}


# ---- reference computations (the original equations) ----------------------------------------------

def reference_resampler(s: dict, prefix: str, x: torch.Tensor, heads: int = 16) -> torch.Tensor:
    """``mm_projector_object`` as flamingo-pytorch computes it (einsum attention over [media; latents])."""
    def ln(t, name):
        return F.layer_norm(t, t.shape[-1:], s[prefix + name + ".weight"], s[prefix + name + ".bias"])

    x = ln(x, "0") + s[prefix + "1.media_pos_emb"][0]
    lat = s[prefix + "1.latents"].expand(x.shape[0], -1, -1)
    depth = len({k[len(prefix):].split(".")[2] for k in s if k.startswith(prefix + "1.layers.")})
    for i in range(depth):
        p = f"1.layers.{i}."
        xm, ll = ln(x, p + "0.norm_media"), ln(lat, p + "0.norm_latents")
        q = ll @ s[prefix + p + "0.to_q.weight"].T
        k, v = (torch.cat([xm, ll], 1) @ s[prefix + p + "0.to_kv.weight"].T).chunk(2, -1)
        b, n, inner = q.shape
        dh = inner // heads
        q, k, v = (t.reshape(b, t.shape[1], heads, dh).permute(0, 2, 1, 3) for t in (q, k, v))
        sim = torch.einsum("bhid,bhjd->bhij", q * dh ** -0.5, k)
        attn = (sim - sim.amax(-1, keepdim=True)).softmax(-1)
        out = torch.einsum("bhij,bhjd->bhid", attn, v).permute(0, 2, 1, 3).reshape(b, n, inner)
        lat = out @ s[prefix + p + "0.to_out.weight"].T + lat
        h = ln(lat, p + "1.0") @ s[prefix + p + "1.1.weight"].T
        lat = F.gelu(h) @ s[prefix + p + "1.3.weight"].T + lat
    return ln(lat, "1.norm") @ s[prefix + "2.weight"].T + s[prefix + "2.bias"]


# ---- seal-vqa --------------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["bin", "safetensors"])
def test_seal_vqa_converts_and_matches_the_original(tmp_path, fmt):
    from seal.core.manifest import read_manifest
    from seal.models.backbone import load_llava
    from seal.models.seal_convert_vqa import convert_seal_vqa
    from seal.models.seal_objects import load_object_projector, object_tokens

    ref = make_seal_vqa(tmp_path / "src", fmt)
    report = convert_seal_vqa(tmp_path / "src", tmp_path / "out", dtype="float32")
    man = read_manifest(tmp_path / "out", "vqa")
    assert man.config["vwm_layout"] == "seal_objects" and man.config["source_format"] == "seal_vqa_7b"
    assert man.config["converted_from"] == str(tmp_path / "src") and man.config["object_tokens"] == 32
    assert report.kind == "vqa" and report.extra_parameters > 0
    model, processor = load_llava(tmp_path / "out")
    vocab = len(ref["tokenizer"])

    # text only: LM logits over the original vocabulary are the original LLaMA's
    ids = torch.tensor([[1, 5, 9, 12, 3, 7]])
    with torch.no_grad():
        ours = model(input_ids=ids).logits[..., :vocab]
        theirs = ref["lm"](input_ids=ids).logits
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)

    # with an image, through the processor and the chat template: the original splices
    # mm_projector(CLIP layer -2, CLS dropped) at the image placeholder
    question = {"type": "text", "text": "what is the color of the cup ?"}
    msgs = [{"role": "user", "content": [{"type": "image"}, question]}]
    prompt = processor.apply_chat_template(msgs, add_generation_prompt=True)
    assert prompt.startswith("A chat between a curious user") and " USER: <image>\nwhat is the color" in prompt
    assert prompt.endswith("ASSISTANT:")
    img = Image.fromarray((np.random.default_rng(0).random((20, 40, 3)) * 255).astype(np.uint8))
    enc = processor(images=img, text=prompt, return_tensors="pt")
    image_id = model.config.image_token_index
    assert int((enc["input_ids"] == image_id).sum()) == 4  # (32 / 16) ** 2 patches
    with torch.no_grad():
        ours = model(**enc).logits[..., :vocab]
        s = ref["state"]
        feats = ref["clip"](enc["pixel_values"], output_hidden_states=True).hidden_states[-2][:, 1:]
        proj = feats @ s["model.mm_projector.weight"].T + s["model.mm_projector.bias"]
        ids = enc["input_ids"][0]
        emb = ref["lm"].model.embed_tokens(ids.clamp(max=vocab - 1)).clone()
        emb[ids == image_id] = proj[0]
        theirs = ref["lm"](inputs_embeds=emb[None]).logits
    torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=1e-4)

    # the object path: crops -> 32 object tokens, the resampler's original equations
    projector = load_object_projector(tmp_path / "out")
    crops = enc["pixel_values"].repeat(3, 1, 1, 1) + 0.1 * torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        tokens = object_tokens(model, crops, projector)
        feats = ref["clip"](crops, output_hidden_states=True).hidden_states[-2][:, 1:]
        expected = reference_resampler(ref["state"], "model.mm_projector_object.", feats)
    assert tokens.shape == (3, 32, 32)
    torch.testing.assert_close(tokens, expected, atol=1e-4, rtol=1e-4)


# ---- seal-vsm --------------------------------------------------------------------------------------

OWL_VISION = dict(hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=1, image_size=64,
                  patch_size=16, hidden_act="quick_gelu", layer_norm_eps=1e-5)
DET_DIM, SAM_DIM = 16, 64


class ReferenceUpsample(torch.nn.Module):
    """The reference mask decoder's ``Upsample``: bilinear x2, then a 3x3 conv."""

    def __init__(self, cin, cout):
        super().__init__()
        self.conv = torch.nn.Conv2d(cin, cout, 3, 1, 1)

    def forward(self, x):
        return self.conv(F.interpolate(x.float(), scale_factor=2.0, mode="bilinear").to(x.dtype))


def reference_sam():
    from segment_anything.modeling import MaskDecoder, PromptEncoder, TwoWayTransformer
    from segment_anything.modeling.common import LayerNorm2d

    pe = PromptEncoder(embed_dim=SAM_DIM, image_embedding_size=(4, 4), input_image_size=(64, 64), mask_in_chans=16)
    md = MaskDecoder(num_multimask_outputs=3, transformer=TwoWayTransformer(depth=2, embedding_dim=SAM_DIM,
                     mlp_dim=128, num_heads=2), transformer_dim=SAM_DIM, iou_head_depth=3, iou_head_hidden_dim=256)
    md.output_upscaling = torch.nn.Sequential(ReferenceUpsample(SAM_DIM, SAM_DIM // 4), LayerNorm2d(SAM_DIM // 4),
                                              torch.nn.GELU(), ReferenceUpsample(SAM_DIM // 4, SAM_DIM // 8),
                                              torch.nn.GELU())
    return pe.eval(), md.eval()


def make_seal_vsm(path: Path, fmt: str = "bin") -> dict:
    """A tiny ``craigwu/seal_vsm_7b`` (no CLIP tower in it, as the merge script saves it) + a CLIP dir."""
    from transformers import OwlViTConfig, OwlViTForObjectDetection

    path.mkdir(parents=True)
    tok = write_tokenizer(path, ("[LOC]", "<im_start>", "<im_end>"))
    lm_state_, lm = llama_state(len(tok), 3)
    _, clip = clip_state(4)
    clip.save_pretrained(str(path.parent / "clip"))
    torch.manual_seed(5)
    owl = OwlViTForObjectDetection(OwlViTConfig(
        text_config=dict(hidden_size=DET_DIM, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2),
        vision_config=OWL_VISION)).eval()
    owl_state = {}
    for k, v in owl.state_dict().items():
        if k.startswith("owlvit.vision_model."):
            owl_state["model." + k] = v
        elif k.split(".")[0] in ("class_head", "box_head", "layer_norm"):
            owl_state["model.owlvit." + k] = v
    owl_state["model.owlvit.vision_model.embeddings.position_ids"] = torch.arange(17)[None]
    pe, md = reference_sam()
    r = torch.randn
    state = {**lm_state_, **owl_state, "model.mm_projector.weight": 0.2 * r(32, 64),
             "model.mm_projector.bias": 0.1 * r(32), "model.visual_projection.weight": 0.2 * r(SAM_DIM, 64),
             **{"model.prompt_encoder." + k: v for k, v in pe.state_dict().items()},
             **{"model.mask_decoder." + k: v for k, v in md.state_dict().items()}}
    for name, out in (("det", DET_DIM), ("seg", SAM_DIM)):
        p = f"model.text_hidden_fcs_{name}.0."
        state.update({p + "0.weight": 0.3 * r(32, 32), p + "0.bias": 0.1 * r(32), p + "2.weight": 0.3 * r(out, 32),
                      p + "2.bias": 0.1 * r(out)})
    write_shards(path, state, fmt)
    config = {"model_type": "llava", "architectures": ["VSMForCausalLM"], "vocab_size": len(tok),
              "num_hidden_layers": 2, "hidden_size": 32, "intermediate_size": 64, "num_attention_heads": 4,
              "rms_norm_eps": 1e-6, "max_position_embeddings": 512, "mm_hidden_size": 64, "out_dim": DET_DIM,
              "train_mask_decoder": True, "mm_use_im_start_end": True, "use_mm_proj": True,
              "mm_vision_tower": "openai/clip-vit-large-patch14", "vision_tower": "openai/clip-vit-large-patch14",
              "mm_vision_select_layer": -2, "tie_word_embeddings": False, "torch_dtype": "float32",
              "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0}
    (path / "config.json").write_text(json.dumps(config))
    pe.load_state_dict({k.removeprefix("model.prompt_encoder."): v for k, v in state.items()
                        if k.startswith("model.prompt_encoder.")})
    return {"lm": lm, "clip": clip, "owl": owl, "pe": pe, "md": md, "state": state, "tokenizer": tok}


def reference_vsm(ref: dict, clip_pixels, owl_pixels, target: str):
    """The reference ``VSMForCausalLM.inference`` on one patch (teacher-forced reply): detection
    logits / boxes and the low-res mask logits."""
    tok, s = ref["tokenizer"], ref["state"]
    prompt = ("A chat between a curious human and an artificial intelligence assistant. The assistant gives "
              "helpful, detailed, and polite answers to the human's questions. USER: <im_start><image><im_end>\n"
              f"Please locate the {target} in this image. ASSISTANT: Sure, [LOC].</s>")
    before, after = prompt.split("<image>")
    ids = tok(before)["input_ids"] + [-200] + tok(after, add_special_tokens=False)["input_ids"]
    ids = torch.tensor(ids)
    feats = ref["clip"](clip_pixels, output_hidden_states=True).hidden_states[-2][:, 1:]
    image = feats[0] @ s["model.mm_projector.weight"].T + s["model.mm_projector.bias"]
    at = int((ids == -200).nonzero())
    emb = torch.cat([ref["lm"].model.embed_tokens(ids[:at]), image, ref["lm"].model.embed_tokens(ids[at + 1:])])
    hidden = ref["lm"].model(inputs_embeds=emb[None, :-1]).last_hidden_state  # generate's last step
    loc_id = tok.convert_tokens_to_ids("[LOC]")
    mask = torch.cat([torch.zeros(image.shape[0] - 1, dtype=torch.bool), ids[1:] == loc_id])
    state = hidden[0][mask]  # (1, D)

    def mlp(name, x):
        p = f"model.text_hidden_fcs_{name}.0."
        return F.relu(x @ s[p + "0.weight"].T + s[p + "0.bias"]) @ s[p + "2.weight"].T + s[p + "2.bias"]

    fmap = ref["owl"].image_embedder(pixel_values=owl_pixels)[0]
    b, g, _, c = fmap.shape
    flat = fmap.reshape(b, g * g, c)
    logits, _ = ref["owl"].class_predictor(flat, mlp("det", state)[:, None])
    boxes = ref["owl"].box_predictor(flat, fmap)
    sparse, dense = ref["pe"](points=None, boxes=None, masks=None)
    sparse = torch.cat([sparse, mlp("seg", state)[:, None]], 1)
    embed = (fmap @ s["model.visual_projection.weight"].T).permute(0, 3, 1, 2)
    masks, _ = ref["md"](image_embeddings=embed, image_pe=ref["pe"].get_dense_pe(), sparse_prompt_embeddings=sparse,
                         dense_prompt_embeddings=dense, multimask_output=False)
    return logits[..., 0], boxes, masks[:, 0]


@pytest.fixture(scope="module")
def converted_vsm(tmp_path_factory):
    from search.seal_vsm.convert import convert_seal_vsm

    root = tmp_path_factory.mktemp("vsm")
    ref = make_seal_vsm(root / "src", "bin")
    report = convert_seal_vsm(root / "src", root / "out", dtype="float32", vision_tower=root / "clip")
    return root, ref, report


def test_seal_vsm_converts_and_matches_the_original(converted_vsm):
    from seal.core.manifest import read_manifest
    from search.seal_vsm.model import SealVSM

    root, ref, report = converted_vsm
    man = read_manifest(root / "out", "vsm")
    assert man.config["backend"] == "seal_vsm" and man.config["source_format"] == "seal_vsm_7b"
    assert man.config["converted_from"] == str(root / "src") and man.search_defaults["confidence_high"] == 0.5
    assert report.kind == "vsm"
    model = SealVSM.from_pretrained(root / "out")
    assert model.heads.grid == 4 and model.image_tokens == 4
    torch.manual_seed(7)
    clip_pixels, owl_pixels = torch.randn(1, 3, 32, 32), torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        emb, fmap = model.encode(clip_pixels, owl_pixels)
        loc = model.loc_states("red cup", emb)
        logits, boxes = model.heads.detect(fmap, loc)
        heat = model.heads.heatmap(fmap, loc)
        r_logits, r_boxes, r_heat = reference_vsm(ref, clip_pixels, owl_pixels, "red cup")
    assert logits.shape == (1, 16) and boxes.shape == (1, 16, 4) and heat.shape == (1, 16, 16)
    torch.testing.assert_close(logits, r_logits, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(boxes, r_boxes, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(heat, r_heat, atol=1e-4, rtol=1e-4)
    # a batch of regions gives each region's own result
    with torch.no_grad():
        emb2, fmap2 = model.encode(clip_pixels.repeat(2, 1, 1, 1), torch.cat([owl_pixels, -owl_pixels]))
        loc2 = model.loc_states("red cup", emb2)
        heat2 = model.heads.heatmap(fmap2, loc2)
    torch.testing.assert_close(heat2[0], heat[0], atol=1e-4, rtol=1e-4)
    assert not torch.allclose(heat2[1], heat[0], atol=1e-3)


def test_converted_vsm_drives_a_search(converted_vsm):
    from search.config import SearchConfig
    from search.localizer import Localizer
    from search.seal_vsm.localizer import SealVSMLocalizerConfig, load_seal_vsm_localizer
    from search.session import SearchSession
    from seal.core.image_source import ImageSource

    root, _, _ = converted_vsm
    loc = load_seal_vsm_localizer(root / "out", cfg=SealVSMLocalizerConfig(max_boxes=5, cue_max_new_tokens=4))
    assert isinstance(loc, Localizer) and loc.name == "seal_vsm"
    rgb = (np.random.default_rng(1).random((192, 256, 3)) * 255).astype(np.uint8)
    session = SearchSession(loc, ImageSource(Image.fromarray(rgb)), SearchConfig(
        min_leaf_side=48, leaf_divisor=4, max_nodes=4, confidence_high=0.999, confidence_low=0.999))
    res = session.search("red cup")
    assert res.nodes_visited >= 2 and res.model_calls >= 2  # the root and at least one child
    assert res.found in (True, False) and res.target == "red cup"
    summary = session.summary()
    assert summary["patches_encoded"] >= 1 + 4 and summary["localizer_lm_passes"] >= 2
    encoded = loc.stats().patches_encoded
    dets = loc.locate("red cup", [(0.0, 0.0, 128.0, 96.0), (0.0, 0.0, 128.0, 96.0)])
    assert loc.stats().patches_encoded == encoded + 1  # a region twice in a batch is encoded once
    assert len(dets) == 2 and dets[0].boxes_xyxy.shape == (5, 4) and dets[0].heatmap.shape == (16, 16)
    assert np.all(dets[0].boxes_xyxy[:, 2] <= 128.0) and np.all((dets[0].scores >= 0) & (dets[0].scores <= 1))
    np.testing.assert_allclose(dets[0].scores, dets[1].scores)
    before = session.stats()
    loc.locate("blue cup", [(0.0, 0.0, 256.0, 192.0)])  # the root: encoded by the search already
    after = loc.stats()
    assert after.encode_cache_hits == before.encode_cache_hits + 1 and after.patches_encoded == before.patches_encoded


def test_cue_phrase_reads_the_reply_like_the_reference():
    from search.seal_vsm.localizer import cue_phrase

    assert cue_phrase("The cup is most likely to appear on the table.", "cup") == "the table"
    assert cue_phrase("The cup is most likely to appear on the desk near the window.", "cup") == \
        "region on the desk near the window"
    assert cue_phrase("I do not know.", "cup") is None


# ---- the CLI and its failures ----------------------------------------------------------------------

def run_cli(argv, capsys):
    from seal.cli.main import main

    rc = main(argv)
    out, err = capsys.readouterr()
    return rc, out, err


def test_cli_converts_both_formats(tmp_path, capsys, converted_vsm):
    make_seal_vqa(tmp_path / "vqa", "safetensors")
    rc, out, err = run_cli(["convert", "seal-vqa", str(tmp_path / "vqa"), str(tmp_path / "vqa_out"), "--json"], capsys)
    assert rc == 0, err
    line = json.loads(out.strip().splitlines()[-1])
    assert line["kind"] == "vqa" and line["dtype"] == "float32"
    assert (tmp_path / "vqa_out" / "object_projector.safetensors").is_file()
    rc, _, err = run_cli(["convert", "seal-vqa", str(tmp_path / "vqa"), str(tmp_path / "vqa_out")], capsys)
    assert rc == 2 and "not empty" in err and len(err.strip().splitlines()) == 1
    root, _, _ = converted_vsm
    rc, out, err = run_cli(["convert", "seal-vsm", str(root / "src"), str(tmp_path / "vsm_out"), "--dtype", "bf16",
                            "--vision-tower", str(root / "clip")], capsys)
    assert rc == 0, err
    assert "(vsm checkpoint, bfloat16)" in out
    from search.seal_vsm.localizer import load_seal_vsm_localizer
    from seal.core.image_source import ImageSource

    loc = load_seal_vsm_localizer(tmp_path / "vsm_out", dtype=torch.bfloat16)  # runs in bfloat16 too
    loc.set_image(ImageSource(Image.new("RGB", (80, 60), (200, 30, 30))))
    det = loc.locate("red cup", [(0.0, 0.0, 80.0, 60.0)])[0]
    assert np.isfinite(det.scores).all() and np.isfinite(det.heatmap).all() and len(det.scores) == 16
    rc, _, err = run_cli(["convert", "seal-vsm", str(root / "src"), str(tmp_path / "vsm_out2")], capsys)
    assert rc == 2 and "--vision-tower" in err and len(err.strip().splitlines()) == 1


def _edit_shard(src: Path, edit) -> None:
    """Load, edit and rewrite every .bin shard of ``src`` (and its index)."""
    index = json.loads((src / "pytorch_model.bin.index.json").read_text())
    for name in sorted(set(index["weight_map"].values())):
        state = torch.load(src / name, weights_only=True)
        edit(state)
        torch.save(state, src / name)
        index["weight_map"] = {k: v for k, v in index["weight_map"].items() if v != name}
        index["weight_map"].update({k: name for k in state})
    (src / "pytorch_model.bin.index.json").write_text(json.dumps(index))


@pytest.mark.parametrize("damage, message", [
    ("missing_shard", "shard pytorch_model-00002-of-00002.bin listed in pytorch_model.bin.index.json is missing"),
    ("corrupt_shard", "cannot read the weight file"),
    ("missing_key", "missing tensor 'model.layers.1.mlp.up_proj.weight'"),
    ("wrong_shape", "tensor 'model.mm_projector.weight' has shape (32, 60), but config.json implies (32, 64)"),
    ("index_lies", "the index lists tensor 'model.norm.weight' in this shard, but the shard does not hold it"),
    ("wrong_kind", "expected a SEAL VQA checkpoint (model_type 'llava_search')"),
])
def test_damaged_sources_are_one_line_errors(tmp_path, capsys, damage, message):
    src = tmp_path / "src"
    make_seal_vqa(src, "bin")
    shard2 = src / "pytorch_model-00002-of-00002.bin"
    if damage == "missing_shard":
        shard2.unlink()
    elif damage == "corrupt_shard":
        shard2.write_bytes(b"PK\x03\x04 not a zip archive at all")
    elif damage == "missing_key":
        _edit_shard(src, lambda s: s.pop("model.layers.1.mlp.up_proj.weight", None))
    elif damage == "wrong_shape":
        _edit_shard(src, lambda s: s.update({"model.mm_projector.weight": torch.zeros(32, 60)})
                    if "model.mm_projector.weight" in s else None)
    elif damage == "index_lies":
        index = json.loads((src / "pytorch_model.bin.index.json").read_text())
        other = next(n for n in set(index["weight_map"].values()) if n != index["weight_map"]["model.norm.weight"])
        index["weight_map"]["model.norm.weight"] = other
        (src / "pytorch_model.bin.index.json").write_text(json.dumps(index))
    elif damage == "wrong_kind":
        cfg = json.loads((src / "config.json").read_text())
        (src / "config.json").write_text(json.dumps({**cfg, "model_type": "llava"}))
    rc, _, err = run_cli(["convert", "seal-vqa", str(src), str(tmp_path / "out")], capsys)
    assert rc == 2
    assert len(err.strip().splitlines()) == 1 and message in err, err


def test_reader_reads_a_single_pickle_and_drops_old_buffers(tmp_path):
    from seal.models.seal_checkpoint import read_original_checkpoint

    state = {"model.norm.weight": torch.ones(4), "model.layers.0.self_attn.rotary_emb.inv_freq": torch.ones(2),
             "model.vision_tower.vision_tower.vision_model.embeddings.position_ids": torch.arange(3)[None]}
    torch.save(state, tmp_path / "pytorch_model.bin")
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llava_search", "hidden_size": 4}))
    ckpt = read_original_checkpoint(tmp_path)
    assert list(ckpt.tensors) == ["model.norm.weight"] and ckpt.origin["model.norm.weight"] == "pytorch_model.bin"
    assert ckpt.take("model.norm.weight", (4,)).sum() == 4
    with pytest.raises(InputError, match=r"model.norm.weight.*has shape \(4,\), but config.json implies \(5,\)"):
        ckpt.take("model.norm.weight", (5,))
    (tmp_path / "pytorch_model.bin").unlink()
    with pytest.raises(InputError, match="no weights"):
        read_original_checkpoint(tmp_path)


def test_seal_vsm_loader_refuses_another_vsm_backend():
    from search.seal_vsm.localizer import load_seal_vsm_localizer

    with pytest.raises(InputError, match="expected a converted SEAL VSM"):
        load_seal_vsm_localizer(Path(__file__).resolve().parents[1] / "checkpoints" / "vsm_tiny")


def test_seal_search_runs_the_converted_vsm(converted_vsm, capsys, tmp_path):
    """The converted SEAL VSM is a search model like any other: seal search --model DIR loads it through its
    manifest (backend seal_vsm), takes its search defaults and searches."""
    root, _, _ = converted_vsm
    image = tmp_path / "scene.png"
    Image.fromarray((np.random.default_rng(2).random((192, 256, 3)) * 255).astype(np.uint8)).save(image)
    rc, out, err = run_cli(["search", "--image", str(image), "--target", "red cup", "--model", str(root / "out"),
                            "--search.max_nodes=3", "--json", "--quiet"], capsys)
    assert rc == 0, err
    record = json.loads(out.strip().splitlines()[-1])
    assert record["target"] == "red cup" and 1 <= record["nodes_visited"] <= 3 and record["model_calls"] >= 1


def test_converted_seal_vqa_answers_in_the_seal_token_layout(tmp_path):
    """A converted SEAL VQA model lays its VWM prompts out as the reference does: no crop, the global view
    long (N tokens); 1-2 crops, the global view short (32 object tokens) and each crop long; 3 or more, all
    short. The tokens the model reads equal that count, their embeddings are the object projector's, and
    answering and option scoring run."""
    from seal.models.seal_convert_vqa import convert_seal_vqa
    from seal.vqa import VQAModel
    from seal.vqa.object_layout import image_paths
    from seal.vqa.scoring import prompt_state
    from vwm.layout import VisualWorkingMemory, VWMConfig

    assert image_paths(1) == ["long"] and image_paths(3) == ["short", "long", "long"]
    assert image_paths(4) == ["short"] * 4
    make_seal_vqa(tmp_path / "src")
    convert_seal_vqa(tmp_path / "src", tmp_path / "out", dtype="float32")
    vqa = VQAModel.load(tmp_path / "out", vwm_config=VWMConfig(crop_side_px=32, view_side_px=64))
    assert vqa.object_projector is not None
    image = Image.fromarray((np.random.default_rng(3).random((120, 160, 3)) * 255).astype(np.uint8))
    boxes = [(10, 10, 40, 40), (60, 20, 90, 50), (100, 60, 130, 90)]
    n_long = int(vqa.model.config.image_seq_length)
    for crops, expected in ((0, n_long), (1, 32 + n_long), (2, 32 + 2 * n_long), (3, 4 * 32)):
        vwm = VisualWorkingMemory(global_image=image, config=vqa.vwm_config)
        for k in range(crops):
            vwm.add_target(f"cup {k}", boxes[k], 0.9)
        enc = vqa.encode("what is the color of the cup ?", vwm)
        assert vqa.last_image_tokens == expected, crops
        features = enc["mm_encoder_outputs"]["image"].pooler_output
        assert [int(f.shape[0]) for f in features] == [32 if p == "short" else n_long for p in image_paths(crops + 1)]
        hidden, logits = prompt_state(vqa.model, enc)
        assert hidden.shape[0] == enc["input_ids"].shape[1] and torch.isfinite(logits).all()
        if crops == 1:  # a long image's tokens are the model's own image features
            pixels = vqa.processor.image_processor(images=[vwm.entries[0].crop], return_tensors="pt")["pixel_values"]
            with torch.no_grad():
                own = vqa.model.model.get_image_features(pixel_values=pixels, return_dict=True).pooler_output[0]
            torch.testing.assert_close(features[1], own, atol=1e-5, rtol=1e-5)
    # the ledger books each crop at what the model reads: long (the processor's count) up to 2 crops, then 32
    assert [vqa.crop_image_tokens(n_long, n) for n in (1, 2, 3, 4)] == [n_long, n_long, 32, 32]
    assert isinstance(vqa.answer(None, "what is the color of the cup ?", vwm=vwm, max_new_tokens=3), str)
    assert len(vqa.score_options(None, "what is the color of the cup ?", ["red", "blue"], vwm=vwm)) == 2
