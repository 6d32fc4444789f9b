"""Self-describing checkpoints through the real CLI: a missing companion file of a shipped checkpoint,
or a companion made for another model, is one line on stderr naming the file, exit 2, before any
question is answered."""

from __future__ import annotations

import shutil

import pytest
from PIL import Image

from seal.core.manifest import read_manifest
from seal.core.paths import PROJECT_ROOT
from tests.cli_helpers import run_cli

SHIPPED = PROJECT_ROOT / "checkpoints"


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    path = tmp_path_factory.mktemp("img") / "scene.png"
    Image.new("RGB", (640, 480), (200, 200, 200)).save(path)
    return path


def _copy(tmp_path, name):
    dst = tmp_path / name
    shutil.copytree(SHIPPED / name, dst)
    return dst


def _one_line_error(rc, err):
    lines = [line for line in err.splitlines() if line.strip()]
    assert rc == 2 and len(lines) == 1, err
    return lines[0]


@pytest.mark.parametrize("missing", ["manifest.json", "vsm_config.json", "decoders.safetensors",
                                     "backbone/model.safetensors", "adapter/adapter_model.safetensors",
                                     "crop_matcher/manifest.json", "crop_matcher/crop_matcher.safetensors"])
def test_a_search_model_missing_a_file_is_one_line_naming_it(tmp_path, image, capsys, missing):
    vsm = _copy(tmp_path, "vsm_tiny")
    (vsm / missing).unlink()
    rc, _, err = run_cli(["search", "--image", image, "--target", "red star", "--model", vsm], capsys)
    line = _one_line_error(rc, err)
    assert str(vsm / missing) in line or (missing.endswith("manifest.json") and str((vsm / missing).parent) in line)


def test_every_listed_file_of_every_shipped_checkpoint_exists():
    """The manifests list the weights, configs and tokenizer files: the strict loader checks them all."""
    kinds = {"vsm_tiny": "vsm", "vqa_tiny": "vqa", "vqa_check_tiny": "vqa", "policy_tiny": "policy_head",
             "policy_tiny_lam0.05": "policy_head", "policy_tiny_lam0.01": "policy_head"}
    for name, kind in kinds.items():
        manifest = read_manifest(SHIPPED / name, kind)
        weights = [f for f in manifest.files if f.endswith(".safetensors")]
        assert weights and manifest.config, name
    assert read_manifest(SHIPPED / "vsm_tiny").second_stage["kind"] == "crop_matcher"
    assert read_manifest(SHIPPED / "policy_tiny").trained_against["vqa"]["path"] == "checkpoints/vqa_tiny"


@pytest.mark.parametrize("checkpoint, missing, flag", [
    ("vqa_tiny", "tokenizer.json", "--models.vqa_path"),
    ("vqa_tiny", "model.safetensors", "--models.vqa_path"),
    ("policy_tiny", "head.safetensors", "--policy.checkpoint"),
    ("policy_tiny", "manifest.json", "--policy.checkpoint"),
])
def test_the_agent_refuses_a_checkpoint_missing_a_file(tmp_path, image, capsys, checkpoint, missing, flag):
    copy = _copy(tmp_path, checkpoint)
    (copy / missing).unlink()
    rc, out, err = run_cli(["ask", "--image", image, "--question", "What colour is the star?", "--options", "red",
                            "blue", f"{flag}={copy}"], capsys)
    line = _one_line_error(rc, err)
    assert str(copy / missing) in line or (missing == "manifest.json" and str(copy) in line)
    assert "answer" not in out  # nothing was answered


def test_a_second_stage_of_another_model_is_refused(tmp_path, image, capsys):
    vsm = _copy(tmp_path, "vsm_tiny")
    manifest = vsm / "crop_matcher" / "manifest.json"
    manifest.write_text(manifest.read_text().replace('"fingerprint": "sha256:', '"fingerprint": "sha256:0'))
    rc, _, err = run_cli(["search", "--image", image, "--target", "red star", "--model", vsm], capsys)
    line = _one_line_error(rc, err)
    assert "second stage" in line and str(vsm / "crop_matcher") in line


@pytest.fixture(scope="module")
def llava_hf(tmp_path_factory):
    """A tiny random llava-hf checkpoint of the real transformers classes (CLIP tower + Llama
    decoder, ``<image>`` token), saved with ``save_pretrained``: what a user's LLaVA looks like."""
    from seal.models.backbone import TinyBackboneConfig, build_tiny_llava, save_llava
    from seal.models.tokenizer import load_tokenizer

    tokenizer = load_tokenizer(SHIPPED / "vqa_tiny")
    model, processor = build_tiny_llava(TinyBackboneConfig(text_hidden=64, text_layers=1, text_heads=2,
                                                           text_intermediate=128, vision_layers=2), tokenizer)
    out = tmp_path_factory.mktemp("hf") / "llava-tiny-hf"
    save_llava(model, processor, out)
    return out


def test_a_users_llava_with_the_shipped_policy_head_is_one_line(llava_hf, image, capsys):
    """The shipped head was trained on ``checkpoints/vqa_tiny``'s hidden states: with another VQA
    model it is refused by name, with the command that trains a head for it."""
    rc, out, err = run_cli(["ask", "--image", image, "--question", "What colour is the star?", "--options", "red",
                            "blue", f"--models.vqa_path={llava_hf}"], capsys)
    line = _one_line_error(rc, err)
    assert "policy_tiny" in line and str(llava_hf) in line and "seal train policy" in line
    rc, out, err = run_cli(["ask", "--image", image, "--question", "What colour is the star?", "--options", "red",
                            "blue", f"--models.vqa_path={llava_hf}", "--policy.baseline_name=no_vision"], capsys)
    assert rc == 0, err  # a baseline reads no hidden state: the user's model answers
