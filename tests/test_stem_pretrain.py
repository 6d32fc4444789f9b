"""Detector-stem pretraining (training/stem_pretrain.py): it learns the maps, saves and reuses its
result, re-scales the stem against the tower, and refuses impossible settings."""

import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest
import torch

from seal.core.errors import ConfigError
from tests.test_vsm_fixtures import tiny_vsm
from training.config import TrainConfig
from training.stem_pretrain import StemPretrainConfig, attribute_accuracy, pretrain_stem

CLASSES = (3, 2, 2)


def _colour_data(n=48, seed=0):
    """32 px patches with one red or blue 16 px square in a random quadrant of a grey field; the
    4x4 maps label its cells colour 1 (red) / 2 (blue), pattern 1, shape 1, background 0."""
    rng = np.random.default_rng(seed)
    patches = np.full((n, 32, 32, 3), 128, np.uint8)
    maps = np.zeros((n, 3, 4, 4), np.int16)
    for i in range(n):
        colour = int(rng.integers(2))
        qy, qx = (int(v) for v in rng.integers(0, 2, 2))
        patches[i, qy * 16:(qy + 1) * 16, qx * 16:(qx + 1) * 16] = (220, 20, 20) if colour == 0 else (20, 20, 220)
        maps[i, :, qy * 2:(qy + 1) * 2, qx * 2:(qx + 1) * 2] = np.array([1 + colour, 1, 1])[:, None, None]
    return patches, maps


def _model():
    torch.manual_seed(0)
    return tiny_vsm(detector_stem=True, stem_widths=(8, 16, 16), attribute_classes=CLASSES)


def _stage(out_dir, steps, batch_size=8, lr=0.01, **kw) -> StemPretrainConfig:
    """The stage with the shipped recipe's kind of loop (one-cycle, AdamW betas 0.9 / 0.999, no clipping)."""
    loop = TrainConfig(out_dir=str(out_dir), max_steps=steps, batch_size=batch_size, lr=lr, weight_decay=0.01,
                       betas=(0.9, 0.999), schedule="one_cycle", warmup_steps=2, grad_clip=0.0, log_every=20)
    return StemPretrainConfig(train=loop, **{"holdout": 8, **kw})


def test_pretraining_learns_the_maps_and_is_reused(tmp_path):
    patches, maps = _colour_data()
    model = _model()
    held = np.arange(40, 48)
    before = attribute_accuracy(model, patches, maps, held)["color"]
    cfg = _stage(tmp_path, 60)
    lines = []
    summary = pretrain_stem(model, patches, maps, cfg, 0, log=lines.append)
    assert not summary["loaded"] and summary["accuracy"]["color"] >= 0.9 > before
    assert (tmp_path / "stem_pretrain.safetensors").is_file()
    log = [json.loads(line) for line in (tmp_path / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [20, 40, 60] and log[-1]["total"] < log[0]["total"]  # the one loop's log
    # the trainable flags the main loop set are restored, and no gradient of the stage is left over for
    # the main loop's first step (the stage's own loop of the shipped model left its last one)
    assert all(p.requires_grad for p in model.detector_stem.parameters())
    assert all(p.grad is None for p in model.parameters())

    again = _model()
    reused = pretrain_stem(again, patches, maps, cfg, 0, log=lines.append)
    assert reused["loaded"] and reused["accuracy"] == summary["accuracy"]
    for a, b in zip(model.detector_stem.state_dict().values(), again.detector_stem.state_dict().values()):
        assert torch.equal(a, b)
    # other settings (or another seed) train again, from the start, instead of loading or resuming a
    # result that is not theirs
    other = pretrain_stem(_model(), patches, maps, _stage(tmp_path, 5, batch_size=4), 0, log=lines.append)
    assert not other["loaded"] and other["steps"] == 5
    assert [json.loads(line)["step"] for line in (tmp_path / "train_log.jsonl").read_text().splitlines()] == [5]
    assert not pretrain_stem(_model(), patches, maps, _stage(tmp_path, 5, batch_size=4), 1, log=lines.append)["loaded"]


def test_output_scale_matches_the_tower_and_keeps_the_head_logits(tmp_path):
    patches, maps = _colour_data()
    model = _model()
    pretrain_stem(model, patches, maps, _stage(tmp_path, 5, output_scale=1.0), 0, log=lambda _: None)
    x = model.preprocess(list(patches[40:48]))
    with torch.no_grad():
        feats = model.encode_images(x).vision  # tower + stem
        stem = model.detector_stem(x)
        tower = feats - stem
    ratio = float(stem.pow(2).mean().sqrt() / tower.pow(2).mean().sqrt())
    assert 0.5 < ratio < 2.0


def test_impossible_settings_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="stem_pretrain"):
        StemPretrainConfig(holdout=-1)
    with pytest.raises(ConfigError, match="warmup_steps"):  # one-cycle needs a warm-up inside the steps
        TrainConfig(max_steps=10, schedule="one_cycle", warmup_steps=10)
    patches, maps = _colour_data(n=8)
    with pytest.raises(ConfigError, match="holdout"):
        pretrain_stem(_model(), patches, maps, _stage(tmp_path, 3), 0)
    no_stem = tiny_vsm()
    with pytest.raises(ConfigError, match="detector_stem"):
        pretrain_stem(no_stem, patches, maps, _stage(tmp_path, 3, holdout=2), 0)


def test_recipe_rejects_pretraining_without_maps():
    from training.vsm_config import VSMTrainConfig

    with pytest.raises(ConfigError, match="attribute_maps"):
        VSMTrainConfig(stem_pretrain=StemPretrainConfig())
