"""Fine-tuning on the user's own data from a real base: the data readers (LLaVA JSON, V*Bench, COCO)
and the real ``seal train vqa|vsm --base DIR --data ...`` / ``seal merge-lora`` CLI on a tiny random
LLaVA saved with ``save_pretrained``."""

import json
import math
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from seal.core.errors import InputError
from seal.core.manifest import fingerprint, read_manifest
from tests.cli_helpers import last_json, run_cli
from training.data.coco import read_coco
from training.data.config import DetectionDataConfig, VQAUserDataConfig
from training.data.llava_json import read_llava_json
from training.data.load import load_conversations

ROOT = Path(__file__).resolve().parents[1]
TINY = dict(text_hidden=32, text_layers=2, text_heads=2, text_intermediate=64, max_positions=512, image_size=32,
            patch_size=8, vision_hidden=32, vision_layers=2, vision_heads=2, vision_intermediate=64)
FAST = ["--train.max_steps=3", "--train.batch_size=2", "--train.warmup_steps=1", "--train.save_every=1",
        "--train.threads=1"]


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    """A tiny random LLaVA (CLIP + Llama) with the project's tokenizer, saved with ``save_pretrained``."""
    from transformers import AutoTokenizer

    from seal.models.backbone import TinyBackboneConfig, build_tiny_llava, save_llava

    tokenizer = AutoTokenizer.from_pretrained(ROOT / "checkpoints" / "vqa_tiny", local_files_only=True)
    model, processor = build_tiny_llava(TinyBackboneConfig(**TINY), tokenizer)
    return save_llava(model, processor, tmp_path_factory.mktemp("base") / "llava")


def _png(path: Path, size=(64, 48), seed=0) -> Path:
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return path


@pytest.fixture(scope="module")
def llava_json(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("vqa_data")
    for i in range(3):
        _png(root / "img" / f"{i}.png", seed=i)
    entries = [
        {"id": "a", "image": "img/0.png", "conversations": [
            {"from": "human", "value": "<image>\nWhat colour is the cup?"}, {"from": "gpt", "value": "Red."},
            {"from": "human", "value": "And the table?"}, {"from": "gpt", "value": "Brown."}]},
        {"id": "b", "image": "img/1.png", "conversations": [
            {"from": "human", "value": "What is on the left?\n<image>"}, {"from": "gpt", "value": "A star."}]},
        {"id": "c", "conversations": [  # text only
            {"from": "human", "value": "Is the sky blue?"}, {"from": "gpt", "value": "Yes."}]},
        {"id": "d", "image": "img/2.png", "conversations": [
            {"from": "human", "value": "<image>\nCount the dots."}, {"from": "gpt", "value": "Three."}]},
    ]
    path = root / "train.json"
    path.write_text(json.dumps(entries))
    return path


@pytest.fixture(scope="module")
def coco(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("coco")
    images = []
    for i in range(3):
        _png(root / "images" / f"{i}.png", size=(96, 64), seed=10 + i)
        images.append({"id": i + 1, "file_name": f"{i}.png", "width": 96, "height": 64})
    annotations = [
        {"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 30, 20], "iscrowd": 0,
         "segmentation": [[10, 10, 40, 10, 40, 30, 10, 30]]},
        {"id": 2, "image_id": 1, "category_id": 2, "bbox": [60, 30, 20, 20], "iscrowd": 0},
        {"id": 3, "image_id": 2, "category_id": 3, "bbox": [5, 5, 40, 40], "caption": "the big green square"},
        {"id": 4, "image_id": 3, "category_id": 1, "bbox": [50, 10, 30, 30], "iscrowd": 0},
        {"id": 5, "image_id": 3, "category_id": 2, "bbox": [0, 0, 96, 64], "iscrowd": 1},  # skipped, counted
    ]
    categories = [{"id": 1, "name": "cup"}, {"id": 2, "name": "star"}, {"id": 3, "name": "square"}]
    (root / "annotations").mkdir()
    path = root / "annotations" / "instances.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return path


# ---- readers --------------------------------------------------------------------------------------------

def test_llava_json_reads_multi_turn_and_text_only_entries(llava_json):
    convs = read_llava_json(llava_json)
    assert [c.id for c in convs] == ["a", "b", "c", "d"]
    assert convs[0].image == llava_json.parent / "img" / "0.png" and len(convs[0].turns) == 2
    assert convs[0].turns[1].question == "And the table?" and convs[0].turns[1].reply == "Brown."
    assert convs[1].turns[0].question == "What is on the left?"  # <image> removed, wherever it was
    assert convs[2].image is None


@pytest.mark.parametrize("entry, needle", [
    ({"id": "x", "image": "missing.png", "conversations": [{"from": "human", "value": "<image>\nq"},
                                                           {"from": "gpt", "value": "a"}]}, "not found"),
    ({"id": "x", "conversations": [{"from": "gpt", "value": "a"}, {"from": "human", "value": "q"}]}, "turn 0"),
    ({"id": "x", "conversations": [{"from": "human", "value": "<image>\nq"}, {"from": "gpt", "value": "a"}]},
     "has no 'image'"),
])
def test_llava_json_errors_name_the_file_and_the_entry(tmp_path, entry, needle):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps([entry]))
    with pytest.raises(InputError) as err:
        read_llava_json(path)
    assert str(path) in str(err.value) and "id 'x'" in str(err.value) and needle in str(err.value)
    assert "\n" not in str(err.value)


def test_coco_reader_names_phrases_polygons_and_counts_crowds(coco):
    data = read_coco(coco)  # images/ beside annotations/ is the default image root
    assert [len(im.instances) for im in data.images] == [2, 1, 1] and data.skipped == 1
    assert data.images[1].instances[0].name == "the big green square"  # the grounding phrase wins
    assert data.images[0].instances[0].outline() == [[10, 10], [40, 10], [40, 30], [10, 30]]
    assert set(data.names) == {"cup", "star", "square", "the big green square"}


@pytest.mark.parametrize("change, needle", [
    (lambda d: d["annotations"][0].update(category_id=9), "unknown category_id 9"),
    (lambda d: d["annotations"][0].update(bbox=[80, 10, 30, 20]), "outside the 96x64 image"),
    (lambda d: d["images"][0].update(file_name="nope.png"), "image not found"),
])
def test_coco_errors_name_the_file_and_the_entry(coco, tmp_path, change, needle):
    data = json.loads(coco.read_text())
    change(data)
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(data))
    with pytest.raises(InputError) as err:
        read_coco(path, image_root=coco.parent.parent / "images")
    assert str(path) in str(err.value) and needle in str(err.value)


def test_vstar_folder_gives_sentence_and_letter_conversations(tmp_path):
    folder = tmp_path / "vstar" / "direct_attributes"
    _png(folder / "s1.png", size=(80, 60))
    (folder / "s1.json").write_text(json.dumps({
        "target_object": ["red cup"], "bbox": [[5, 5, 10, 10]], "question": "What is the colour of the cup?",
        "options": ["The colour of the cup is red.", "The colour of the cup is blue."]}))
    (tmp_path / "vstar" / "categories.json").write_text(json.dumps({"categories": ["direct_attributes"]}))
    convs = load_conversations(VQAUserDataConfig(path=str(tmp_path / "vstar")), seed=0)
    assert [c.turns[0].reply for c in convs][0] == "The colour of the cup is red."
    letter = convs[1].turns[0]
    correct = next(ln for ln in letter.question.splitlines() if ln.startswith(f"({letter.reply})"))
    assert correct.endswith("red.")
    from training.data.load import load_detections

    data = load_detections(DetectionDataConfig(path=str(tmp_path / "vstar")), log=lambda m: None)
    assert data.images[0].instances[0].name == "red cup" and data.images[0].width == 80


def test_vsm_rows_have_positives_and_absent_negatives(coco):
    from search.config import SearchConfig
    from training.data.vsm_rows import build_detection_dataset
    from training.vsm_data import VSMDataConfig

    data = read_coco(coco)
    cfg = VSMDataConfig(min_legible_px=2, random_crops=2, positives_per_patch=2, cache_dir="")
    rows = build_detection_dataset(data, cfg, DetectionDataConfig(negative_rate=1.0), SearchConfig(), 32, (16, 16),
                                   (128, 128, 128), seed=0, log=lambda m: None)
    first = [e for e in rows.examples if rows.records[e.patch].scene == 0]
    positives = [e for e in first if len(e.boxes)]
    negatives = [e for e in first if not len(e.boxes)]
    assert {e.target for e in positives} <= {"cup", "star"} and positives
    assert any(e.target in ("square", "the big green square") for e in negatives)  # absent from image 0
    assert all(e.heatmap.sum() == 0 for e in negatives if e.target in ("square", "the big green square"))
    assert rows.patches.shape[1:] == (32, 32, 3)


def test_multi_turn_example_has_labels_on_the_replies_only(base, llava_json):
    from transformers import AutoProcessor

    from training.data.vqa_examples import conversation_example
    from vwm.layout import VWMConfig

    processor = AutoProcessor.from_pretrained(base, local_files_only=True)
    ex = conversation_example(processor, read_llava_json(llava_json)[0], VWMConfig())
    tok = processor.tokenizer
    replies = tok.decode(ex["input_ids"][ex["labels"] != -100])
    assert replies.replace(" ", "") == "Red.</s>Brown.</s>"
    text = tok.decode(ex["input_ids"][ex["labels"] == -100])
    assert "What colour is the cup?" in text and "USER: And the table? ASSISTANT:" in text
    assert ex["pixel_values"].shape[0] == 1 and "<image>" in text


# ---- the CLI ------------------------------------------------------------------------------------------

def _adapter_tensors(export: Path) -> dict:
    return load_file(str(export / "adapter_model.safetensors"))


def test_seal_train_vqa_lora_on_llava_json_then_merge(base, llava_json, tmp_path, capsys):
    out, export = tmp_path / "run", tmp_path / "run" / "export"
    rc, stdout, err = run_cli(["train", "vqa", "--base", base, "--data", llava_json, f"--train.out_dir={out}",
                               f"--vqa_train.export_dir={export}", "--lora.rank=4", *FAST], capsys)
    assert rc == 0, err
    summary = last_json(stdout)
    assert summary["steps"] == 3 and summary["examples"] == 4
    manifest = read_manifest(export, "vqa")
    assert manifest.trained_against["base"] == {"path": str(base), "fingerprint": fingerprint(base)}
    assert manifest.config["base"]["model_type"] == "llava" and manifest.config["adapter"]["rank"] == 4
    assert manifest.recipe["data"]["path"] == str(llava_json) and "--base" in manifest.recipe["command"]
    assert not (export / "model.safetensors").exists()  # the adapter alone
    tensors = _adapter_tensors(export)
    lora_b = [k for k in tensors if "lora_B" in k]
    assert lora_b and any(tensors[k].abs().max() > 0 for k in lora_b)  # B starts at zero: it trained
    assert any("multi_modal_projector" in k for k in tensors)  # modules_to_save
    assert not any("vision_tower" in k for k in tensors)

    merged = tmp_path / "merged"
    rc, stdout, err = run_cli(["merge-lora", "--vqa", export, "--out", merged, "--json"], capsys)
    assert rc == 0, err
    assert last_json(stdout)["parity_ok"]
    from transformers import LlavaForConditionalGeneration

    plain = LlavaForConditionalGeneration.from_pretrained(merged, local_files_only=True)
    original = LlavaForConditionalGeneration.from_pretrained(base, local_files_only=True)
    new, old = plain.state_dict(), original.state_dict()
    q = next(k for k in new if "language_model" in k and k.endswith("q_proj.weight"))
    assert not torch.equal(new[q], old[q])  # the LoRA delta folded in
    frozen = [k for k in new if "vision_tower" in k or "embed_tokens" in k]
    assert frozen and all(torch.equal(new[k], old[k]) for k in frozen)  # the base's other weights untouched
    assert read_manifest(merged, "vqa").recipe["merged_from"]["path"] == str(export)


def test_seal_train_vqa_resumes_where_it_stopped(base, llava_json, tmp_path, capsys):
    def args(out: Path, steps: int) -> list:  # a constant learning rate: the 2-step run is the 3-step run's start
        return ["train", "vqa", "--base", base, "--data", llava_json, f"--train.out_dir={out}",
                f"--vqa_train.export_dir={out / 'export'}", *FAST, f"--train.max_steps={steps}",
                "--train.warmup_steps=0", "--train.min_lr_ratio=1"]

    assert run_cli(args(tmp_path / "whole", 3), capsys)[0] == 0
    assert run_cli(args(tmp_path / "cut", 2), capsys)[0] == 0  # "interrupted" after step 2
    rc, stdout, err = run_cli(args(tmp_path / "cut", 3), capsys)
    assert rc == 0, err
    assert "resumed from" in stdout and last_json(stdout)["steps"] == 3
    steps = [json.loads(line)["step"] for line in (tmp_path / "cut" / "train_log.jsonl").read_text().splitlines()]
    assert steps == [2, 3]
    whole, cut = _adapter_tensors(tmp_path / "whole" / "export"), _adapter_tensors(tmp_path / "cut" / "export")
    assert whole.keys() == cut.keys() and all(torch.allclose(whole[k], cut[k], atol=1e-6) for k in whole)


def test_seal_train_vsm_on_coco_then_merge(base, coco, tmp_path, capsys):
    out, export = tmp_path / "run", tmp_path / "run" / "export"
    rc, stdout, err = run_cli(["train", "vsm", "--base", base, "--data", coco.parent.parent, f"--train.out_dir={out}",
                               f"--vsm_train.export_dir={export}", "--vsm_train.data.min_legible_px=2", *FAST],
                              capsys)
    assert rc == 0, err
    assert last_json(stdout)["steps"] == 3
    manifest = read_manifest(export, "vsm")
    assert manifest.recipe["base"]["path"] == str(base) and manifest.recipe["base"]["fingerprint"] == fingerprint(base)
    assert manifest.recipe["data"]["path"] == str(coco.parent.parent)
    backbone = load_file(str(export / "backbone" / "model.safetensors"))
    original = load_file(str(base / "model.safetensors"))
    # the frozen base weights are saved unchanged (VSMModel.save_pretrained's peft unload() leaves the
    # trained modules_to_save copy, the projector, in backbone/ too; the adapter holds it as well)
    frozen = [k for k in original if not k.startswith("multi_modal_projector")]
    assert len(frozen) > 40 and all(torch.equal(backbone[k], original[k]) for k in frozen)
    adapter = load_file(str(export / "adapter" / "adapter_model.safetensors"))
    assert any(adapter[k].abs().max() > 0 for k in adapter if "lora_B" in k)
    merged = tmp_path / "merged"
    rc, stdout, err = run_cli(["merge-lora", "--vsm", export, "--out", merged, "--json"], capsys)
    assert rc == 0, err
    from transformers import LlavaForConditionalGeneration

    LlavaForConditionalGeneration.from_pretrained(merged, local_files_only=True)


def test_synthetic_vstar_folders_train_both_models_through_the_readers(base, tmp_path, capsys):
    bench = tmp_path / "synth"
    rc, _, err = run_cli(["bench", "synth", "--out", bench, "--n", "2", "--split", "train", "--long-side", "480",
                          "--synth.min_objects=6", "--synth.max_objects=10"], capsys)
    assert rc == 0, err
    for kind in ("vqa", "vsm"):
        out = tmp_path / kind
        rc, stdout, err = run_cli(["train", kind, "--base", base, "--data", bench, f"--train.out_dir={out}",
                                   f"--{kind}_train.export_dir={out / 'export'}", *FAST], capsys)
        assert rc == 0, err
        assert read_manifest(out / "export", kind).recipe["data"]["path"] == str(bench)
    assert last_json(stdout)["rows"] > 0


def test_full_finetune_exports_a_whole_model_that_names_its_base(base, llava_json, tmp_path, capsys):
    export = tmp_path / "run" / "export"
    rc, _, err = run_cli(["train", "vqa", "--base", base, "--data", llava_json, f"--train.out_dir={tmp_path / 'run'}",
                          f"--vqa_train.export_dir={export}", "--lora.enabled=false", "--lora.full_finetune=true",
                          *FAST], capsys)
    assert rc == 0, err
    from transformers import LlavaForConditionalGeneration

    new = LlavaForConditionalGeneration.from_pretrained(export, local_files_only=True).state_dict()
    old = LlavaForConditionalGeneration.from_pretrained(base, local_files_only=True).state_dict()
    vision = [k for k in new if "vision_tower" in k and k.endswith("q_proj.weight")]
    assert vision and any(not torch.equal(new[k], old[k]) for k in vision)  # every weight trained
    manifest = read_manifest(export, "vqa")
    assert manifest.config["adapter"] is None and manifest.trained_against["base"]["path"] == str(base)
    rc, _, err = run_cli(["merge-lora", "--vqa", export, "--out", tmp_path / "m"], capsys)
    assert rc == 2 and "not a VQA adapter" in err


@pytest.mark.parametrize("family", ["llava", "llava_onevision", "qwen2_5_vl"])
def test_seal_train_vqa_on_each_family_then_merge(family, llava_json, tmp_path, capsys):
    """Each family's real class, chat template and image processing (tests/vlm_fixtures.py)."""
    from transformers import AutoModelForImageTextToText

    from tests.vlm_fixtures import cached_tiny_vlm

    base_dir = cached_tiny_vlm(family)
    export = tmp_path / "run" / "export"
    rc, stdout, err = run_cli(["train", "vqa", "--base", base_dir, "--data", llava_json, f"--train.out_dir={tmp_path}",
                               f"--vqa_train.export_dir={export}", *FAST], capsys)
    assert rc == 0, err
    assert read_manifest(export, "vqa").config["base"]["model_type"] == family
    tensors = _adapter_tensors(export)
    projector = "visual.merger" if family == "qwen2_5_vl" else "multi_modal_projector"
    assert any(projector in k for k in tensors) and any(tensors[k].abs().max() > 0 for k in tensors if "lora_B" in k)
    merged = tmp_path / "merged"
    rc, stdout, err = run_cli(["merge-lora", "--vqa", export, "--out", merged, "--json"], capsys)
    assert rc == 0 and last_json(stdout)["parity_ok"], err
    model = AutoModelForImageTextToText.from_pretrained(merged, local_files_only=True)
    assert model.config.model_type == family


@pytest.mark.parametrize("family", ["llava_onevision", "qwen2_5_vl"])
def test_seal_train_vsm_on_other_families_then_merge(family, coco, tmp_path, capsys):
    from tests.vlm_fixtures import cached_tiny_vlm

    export = tmp_path / "run" / "export"
    projector = "merger" if family == "qwen2_5_vl" else "multi_modal_projector"
    rc, stdout, err = run_cli(["train", "vsm", "--base", cached_tiny_vlm(family), "--data", coco,
                               f"--train.out_dir={tmp_path / 'run'}", f"--vsm_train.export_dir={export}",
                               "--vsm_train.data.min_legible_px=2", f"--vsm_train.vsm.modules_to_save=[{projector}]",
                               *FAST], capsys)
    assert rc == 0, err
    assert read_manifest(export, "vsm").recipe["base"]["model_type"] == family
    rc, stdout, err = run_cli(["merge-lora", "--vsm", export, "--out", tmp_path / "merged", "--json"], capsys)
    assert rc == 0 and last_json(stdout)["parity_ok"], err


def test_malformed_data_is_one_line_through_the_cli(base, tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text('[{"id": "1", "conversations": [')
    rc, _, err = run_cli(["train", "vqa", "--base", base, "--data", bad, f"--train.out_dir={tmp_path / 'r'}", *FAST],
                         capsys)
    assert rc == 2 and "malformed JSON" in err and str(bad) in err and len(err.strip().splitlines()) == 1
    rc, _, err = run_cli(["train", "policy", "--data", bad], capsys)
    assert rc == 2 and "--data" in err
    coco = tmp_path / "coco.json"
    coco.write_text(json.dumps({"images": [], "annotations": [], "categories": "cup"}))
    rc, _, err = run_cli(["train", "vsm", "--base", base, "--data", coco, f"--train.out_dir={tmp_path / 'v'}", *FAST],
                         capsys)
    assert rc == 2 and str(coco) in err and "'categories': expected a list" in err
    assert len(err.strip().splitlines()) == 1


def test_synthetic_scenes_exported_in_the_users_formats_read_back(tmp_path):
    from eval.synth.config import SynthConfig
    from training.data.export_synth import export_synth

    synth = SynthConfig(n=3, split="train", suite="mixed", long_side=480, min_objects=6, max_objects=10)
    files = export_synth(synth, tmp_path / "synth")
    convs = read_llava_json(files["llava"])
    assert len(convs) == 6 and {len(c.turns) for c in convs} == {1}
    data = read_coco(files["coco"])
    assert len(data.images) == 3 and all(6 <= len(im.instances) <= 10 for im in data.images)
    assert all(i.polygon for im in data.images for i in im.instances)
    assert export_synth(synth, tmp_path / "again")["llava"] and \
        (tmp_path / "synth" / "llava.json").read_text() == (tmp_path / "again" / "llava.json").read_text()


def test_a_bf16_base_trains_under_bf16_autocast(base, llava_json, tmp_path, capsys):
    """A 7B base is loaded in bf16 (vqa_train.base_dtype) and trains under the same autocast, the adapter in
    fp32; a half-precision base without that autocast is a one-line config error."""
    out = tmp_path / "run"
    rc, stdout, err = run_cli(["train", "vqa", "--base", base, "--data", llava_json, f"--train.out_dir={out}",
                               f"--vqa_train.export_dir={out / 'export'}", "--vqa_train.base_dtype=bf16",
                               "--train.mixed_precision=bf16", "--lora.rank=4", *FAST], capsys)
    assert rc == 0, err
    summary = last_json(stdout)
    assert summary["steps"] == 3 and math.isfinite(summary["final"]["total"])
    tensors = _adapter_tensors(out / "export")
    assert {t.dtype for k, t in tensors.items() if "lora_" in k} == {torch.float32}
    rc, _, err = run_cli(["train", "vqa", "--base", base, "--data", llava_json, f"--train.out_dir={tmp_path / 'r2'}",
                          "--vqa_train.base_dtype=bf16", *FAST], capsys)
    assert rc == 2 and "vqa_train.base_dtype" in err and len(err.strip().splitlines()) == 1
