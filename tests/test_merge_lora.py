"""``seal merge-lora``: the merged LLaVA loads as a plain llava-hf directory, matches the adapter model
(LM logits, ``<LOC>`` state, decoders) and still loads as a VSM localizer; bad input exits 2."""

import json
import shutil

import pytest
import torch

from search.vsm.model import VSMModel
from seal.cli.main import main
from seal.core.errors import InputError
from seal.models.backbone import load_llava
from tests.test_vsm_fixtures import perturb_adapter, random_patches, tiny_vsm

TOL = 1e-4


def _perturb_saved_modules(model, seed=2, scale=0.3):
    """``modules_to_save`` copies start equal to the originals; move them so losing them would show."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.llava.named_parameters():
            if "modules_to_save" in name:
                param.add_(torch.randn(param.shape, generator=gen) * scale)


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """An adapter checkpoint whose LoRA B, ``<LOC>`` rows and projector copy are all non-zero."""
    model = tiny_vsm(modules_to_save=("multi_modal_projector",))
    perturb_adapter(model)
    _perturb_saved_modules(model)
    return model.eval().save_pretrained(tmp_path_factory.mktemp("src") / "vsm")


@pytest.fixture(scope="module")
def merged(source, tmp_path_factory):
    """``(out_dir, json report)`` of one real CLI run (``--json``)."""
    import contextlib
    import io

    out = tmp_path_factory.mktemp("merged") / "vsm_merged"
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        code = main(["merge-lora", "--vsm", str(source), "--out", str(out), "--json"])
    assert code == 0, stdout.getvalue()
    return out, json.loads(stdout.getvalue().strip().splitlines()[-1])


def _inputs(model):
    enc = model.prompts(["detect", "context"], ["red star", "blue circle"], with_reply=True)
    return enc["input_ids"], enc["attention_mask"], model.preprocess(random_patches(2, seed=5))


def test_report_names_the_output_and_a_small_parity_gap(source, merged):
    out, report = merged
    assert report["out"] == str(out) and report["source"] == str(source) and report["parity_ok"] is True
    assert report["max_abs_logit_diff"] < TOL and report["max_abs_loc_state_diff"] < TOL
    assert report["max_abs_heatmap_diff"] < TOL
    plain, _ = load_llava(source / "backbone")  # same architecture as the merged model
    assert report["parameters"] == sum(p.numel() for p in plain.parameters())
    meta = json.loads((out / "vsm_config.json").read_text())
    assert meta["merged"] is True and meta["merge"]["source"] == str(source)


def test_merged_dir_is_a_plain_llava_with_the_adapter_folded_in(source, merged):
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    out, _ = merged
    assert not (out / "adapter").exists() and not (out / "adapter_config.json").exists()
    llava, info = LlavaForConditionalGeneration.from_pretrained(str(out), local_files_only=True,
                                                                output_loading_info=True)
    assert not any(info[k] for k in ("missing_keys", "unexpected_keys", "mismatched_keys")), info
    processor = AutoProcessor.from_pretrained(str(out), local_files_only=True)
    assert not any("lora" in k or "modules_to_save" in k for k in llava.state_dict())
    adapter = VSMModel.from_pretrained(source)
    assert processor.tokenizer.convert_tokens_to_ids("<LOC>") == adapter.loc_token_id
    ids, mask, pixels = _inputs(adapter)
    with torch.no_grad():
        want = adapter.llava(input_ids=ids, attention_mask=mask, pixel_values=pixels).logits
        got = llava.eval()(input_ids=ids, attention_mask=mask, pixel_values=pixels).logits
        base = adapter.llava.unload()(input_ids=ids, attention_mask=mask, pixel_values=pixels).logits
    assert want.shape == got.shape == (2, ids.shape[1], len(processor.tokenizer))
    assert (want - got).abs().max() < TOL
    assert (want - base).abs().max() > 1e-2  # the adapter mattered, so the merge really carried it


def test_merged_vsm_gives_the_same_loc_states_and_detections(source, merged):
    out, _ = merged
    adapter, folded = VSMModel.from_pretrained(source), VSMModel.from_pretrained(out)
    assert folded.is_merged and not adapter.is_merged and folded.cfg == adapter.cfg and not folded.training
    ids, mask, pixels = _inputs(adapter)
    with torch.no_grad():
        a = adapter(ids, mask, pixel_values=pixels, labels=ids)
        b = folded(ids, mask, pixel_values=pixels, labels=ids)
    for name in ("loc_state", "heatmap", "quality", "boxes", "box_logits", "lm_logits"):
        assert (getattr(a, name) - getattr(b, name)).abs().max() < TOL, name
    with pytest.raises(InputError, match="no adapter to train"):
        VSMModel.from_pretrained(out, trainable=True)


def test_a_merged_model_saves_and_reloads_in_the_merged_layout(merged, tmp_path):
    out, _ = merged
    folded = VSMModel.from_pretrained(out)
    again = VSMModel.from_pretrained(folded.save_pretrained(tmp_path / "again"))
    assert again.is_merged and json.loads((tmp_path / "again" / "vsm_config.json").read_text())["merged"] is True
    ids, mask, pixels = _inputs(folded)
    with torch.no_grad():
        assert torch.equal(folded(ids, mask, pixel_values=pixels).heatmap,
                           again(ids, mask, pixel_values=pixels).heatmap)


def _run_error(capsys, argv):
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and err.startswith("seal merge-lora: error: "), err
    return err


def test_bad_input_exits_2_with_one_line(source, merged, tmp_path, capsys):
    out = str(tmp_path / "out")
    err = _run_error(capsys, ["merge-lora", "--vsm", str(tmp_path / "missing"), "--out", out])
    assert "checkpoint directory" in err
    garbage = tmp_path / "garbage"
    garbage.mkdir()
    (garbage / "vsm_config.json").write_text("{not json")
    (garbage / "weights.bin").write_bytes(b"\x00\x01garbage")
    assert "found no manifest.json" in _run_error(capsys, ["merge-lora", "--vsm", str(garbage), "--out", out])
    broken = tmp_path / "broken"
    shutil.copytree(source, broken)
    (broken / "backbone" / "model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00garbage!")
    err = _run_error(capsys, ["merge-lora", "--vsm", str(broken), "--out", out])
    assert str(broken / "backbone" / "model.safetensors") in err and "truncated or corrupt" in err
    shutil.copyfile(source / "backbone" / "model.safetensors", broken / "backbone" / "model.safetensors")
    (broken / "adapter" / "adapter_model.safetensors").write_bytes(b"not a safetensors file")
    assert "cannot load the adapter" in _run_error(capsys, ["merge-lora", "--vsm", str(broken), "--out", out])
    already, _ = merged
    assert "already merged" in _run_error(capsys, ["merge-lora", "--vsm", str(already), "--out", out])
    assert "not empty" in _run_error(capsys, ["merge-lora", "--vsm", str(source), "--out", str(already)])
    assert "source checkpoint" in _run_error(capsys, ["merge-lora", "--vsm", str(source), "--out", str(source)])
    assert not (tmp_path / "out").exists()


def test_merge_carries_the_second_stage_and_the_search_defaults(tmp_path):
    """A checkpoint with a crop matcher and search defaults merges into one that searches the same
    way: the second stage is copied, the manifest keeps the defaults and names its source."""
    from search.vsm.crop_matcher import CropMatcher, CropMatcherConfig
    from search.vsm.localizer import load_vsm_localizer
    from seal.config import load
    from seal.core.manifest import read_manifest

    src = tmp_path / "vsm"
    CropMatcher(CropMatcherConfig(vocabulary=["red", "star"], widths=[8, 8], strides=[2, 2], embed_dim=8)) \
        .save_pretrained(src / "crop_matcher")
    tiny_vsm().eval().save_pretrained(src, search_defaults={"confidence_high": 0.3}, second_stage="crop_matcher")
    out = tmp_path / "merged"
    assert main(["merge-lora", "--vsm", str(src), "--out", str(out)]) == 0
    before, after = read_manifest(src, "vsm"), read_manifest(out, "vsm")
    assert after.search_defaults == before.search_defaults == {"confidence_high": 0.3}
    assert after.second_stage == before.second_stage and after.recipe["merged_from"]["path"] == str(src)
    assert load_vsm_localizer(out).crop_matcher is not None
    assert load([], [f"models.vsm_path={out}"]).search.confidence_high == 0.3
