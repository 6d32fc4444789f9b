"""One base LLaVA with two named LoRA adapters (search.vsm.shared): each adapter gives exactly the
outputs of its own separate model, and switching changes them (the 7B memory estimate's formulas:
tests/research/test_bench_shared_backbone.py)."""

import copy

import pytest
import torch

from search.vsm.config import VSMConfig
from search.vsm.model import _lora_config
from search.vsm.prompts import encode_prompts
from search.vsm.shared import SharedBackbone, adapter_parameter_bytes, max_abs_diff, unique_parameter_bytes
from seal.core.errors import InputError
from tests.test_vsm_fixtures import HEADS, perturb_adapter, random_patches, tiny_backbone

TOL = 1e-5


def _perturb(model, seed, scale=0.3):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name or "trainable_tokens_delta" in name or "modules_to_save" in name:
                p.add_(torch.randn(p.shape, generator=gen) * scale)


def _configs(loc_id):
    vqa = VSMConfig(**{**HEADS, "train_loc_token": False})
    vsm = VSMConfig(**{**HEADS, "modules_to_save": ("multi_modal_projector",)})
    return {"vqa": _lora_config(vqa, loc_id), "vsm": _lora_config(vsm, loc_id)}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """Base, the two separate adapted models (random non-zero adapters) and their saved adapter dirs."""
    from peft import get_peft_model

    base, processor = tiny_backbone()
    loc_id = processor.tokenizer.convert_tokens_to_ids("<LOC>")
    root = tmp_path_factory.mktemp("adapters")
    separate, dirs = {}, {}
    for seed, (name, cfg) in enumerate(_configs(loc_id).items(), start=1):
        model = get_peft_model(copy.deepcopy(base), cfg)
        _perturb(model, seed)
        dirs[name] = root / name
        model.save_pretrained(str(dirs[name]), save_embedding_layers=False)
        separate[name] = model.eval()
    enc = encode_prompts(processor.tokenizer, ["detect", "context"], ["red star", "blue circle"], 16, True)
    pixels = processor.image_processor(images=random_patches(2, seed=3), return_tensors="pt")["pixel_values"]
    inputs = {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"], "pixel_values": pixels}
    return base, separate, dirs, inputs


@torch.no_grad()
def _logits(call, inputs):
    return call(**inputs).logits


def test_each_adapter_of_the_shared_model_matches_its_separate_model(setup):
    base, separate, dirs, inputs = setup
    shared = SharedBackbone.from_adapter_dirs(copy.deepcopy(base), dirs).eval()
    assert shared.adapter_names == ("vqa", "vsm") and shared.active_adapter == "vqa"
    want = {name: _logits(model, inputs) for name, model in separate.items()}
    for name in ("vqa", "vsm", "vqa", "vsm"):  # switching back and forth, per call
        got = _logits(lambda **kw: shared(name, **kw), inputs)
        assert shared.active_adapter == name
        assert max_abs_diff(got, want[name]) < TOL, name
    assert max_abs_diff(want["vqa"], want["vsm"]) > 1e-2  # switching adapters changes the outputs
    assert not any(p.requires_grad for p in shared.parameters())  # set_adapter must not unfreeze
    # the <LOC>-token adapter named first: loaded last internally (peft limit), still active first
    reverse = SharedBackbone.from_adapter_dirs(copy.deepcopy(base), {"vsm": dirs["vsm"], "vqa": dirs["vqa"]}).eval()
    assert reverse.active_adapter == "vsm" and set(reverse.adapter_names) == {"vqa", "vsm"}
    for name in ("vsm", "vqa"):
        assert max_abs_diff(_logits(lambda **kw: reverse(name, **kw), inputs), want[name]) < TOL, name


def test_one_base_is_held_once_and_each_adapter_keeps_its_own_weights(setup):
    base, separate, dirs, _ = setup
    shared = SharedBackbone.from_adapter_dirs(copy.deepcopy(base), dirs)
    own = shared.adapter_parameter_bytes()
    assert own["vqa"] == adapter_parameter_bytes(separate["vqa"])
    assert own["vsm"] == adapter_parameter_bytes(separate["vsm"])
    base_bytes = unique_parameter_bytes(base)
    assert unique_parameter_bytes(shared) == base_bytes + own["vqa"] + own["vsm"]
    assert unique_parameter_bytes(*separate.values()) == 2 * base_bytes + own["vqa"] + own["vsm"]


def test_using_restores_the_previous_adapter_and_unknown_names_fail(setup):
    base, _, dirs, inputs = setup
    shared = SharedBackbone.from_adapter_dirs(copy.deepcopy(base), dirs).eval()
    with shared.using("vsm") as s:
        assert s.active_adapter == "vsm"
    assert shared.active_adapter == "vqa"
    with pytest.raises(KeyError, match="unknown adapter"):
        shared("mystery", **inputs)


def test_fresh_adapters_via_add_adapter(setup):
    base, _, _, inputs = setup
    shared = SharedBackbone.from_configs(copy.deepcopy(base), _configs(loc_id=5)).eval()
    assert shared.adapter_names == ("vqa", "vsm") and shared.active_adapter == "vqa"
    gen = torch.Generator().manual_seed(9)
    with torch.no_grad():  # train (stand-in) only the vsm adapter; the vqa one stays at its zero-init B
        for n, p in shared.peft.named_parameters():
            if ".vsm" in n and ("lora_B" in n or "trainable_tokens_delta" in n or "modules_to_save" in n):
                p.add_(torch.randn(p.shape, generator=gen) * 0.3)
    plain = _logits(base, inputs)
    assert max_abs_diff(_logits(lambda **kw: shared("vqa", **kw), inputs), plain) < TOL  # zero LoRA = base
    assert max_abs_diff(_logits(lambda **kw: shared("vsm", **kw), inputs), plain) > 1e-2


def test_a_loaded_vsm_shares_its_base_with_a_vqa_adapter(setup):
    _, separate, dirs, inputs = setup
    from tests.test_vsm_fixtures import tiny_vsm

    vsm = tiny_vsm()
    perturb_adapter(vsm)
    vsm.eval()
    pixels = vsm.preprocess(random_patches(2, seed=3))
    enc = vsm.prompts(["detect", "context"], ["red star", "blue circle"], with_reply=False)
    with torch.no_grad():
        before = vsm(enc["input_ids"], enc["attention_mask"], pixel_values=pixels)
    shared = SharedBackbone.from_vsm(vsm, {"vqa": dirs["vqa"]})
    assert shared.adapter_names == ("vqa", "vsm") and shared.active_adapter == "vsm" and vsm.llava is shared.peft
    vqa_logits = _logits(lambda **kw: shared("vqa", **kw), inputs)
    assert max_abs_diff(vqa_logits, _logits(separate["vqa"], inputs)) < TOL
    with shared.using("vsm"), torch.no_grad():
        after = vsm(enc["input_ids"], enc["attention_mask"], pixel_values=pixels)
    assert max_abs_diff(after.loc_state, before.loc_state) < TOL and max_abs_diff(after.heatmap, before.heatmap) < TOL
    with pytest.raises(ValueError, match="already holds adapters"):
        SharedBackbone.from_vsm(vsm, {"vqa": dirs["vqa"]})
    with pytest.raises(ValueError, match="already used"):
        SharedBackbone.from_vsm(tiny_vsm(), {"vsm": dirs["vqa"]})


def test_loading_is_strict(setup, tmp_path):
    import shutil

    from safetensors.torch import load_file, save_file

    base, _, dirs, _ = setup
    with pytest.raises(InputError, match="adapter_config.json is missing"):
        SharedBackbone.from_adapter_dirs(copy.deepcopy(base), {"vqa": tmp_path / "missing"})
    bad = tmp_path / "extra"
    shutil.copytree(dirs["vsm"], bad)
    tensors = load_file(str(bad / "adapter_model.safetensors"))
    tensors["base_model.model.bogus.lora_A.weight"] = torch.zeros(2, 2)
    save_file(tensors, str(bad / "adapter_model.safetensors"))
    with pytest.raises(InputError, match="adapter weights do not match"):
        SharedBackbone.from_adapter_dirs(copy.deepcopy(base), {"vqa": dirs["vqa"], "vsm": bad})
