"""Policy-training data from forced-action agent runs, and the ``seal train policy`` recipe on it."""

import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest

from eval.readers.vstar import read_vstar
from eval.synth.config import SynthConfig
from eval.synth.generate import generate_benchmark
from seal.config import command_config, load
from seal.core.manifest import read_manifest
from seal.models.backbone import TinyBackboneConfig, build_tiny_llava, save_llava
from seal.models.tokenizer import train_tokenizer
from seal.policy.config import trained_lambda_cost
from seal.policy.data import load_policy_data
from seal.policy.features import feature_dim
from training.policy_data import option_nll
from training.policy_recipe import run

ROOT = Path(__file__).resolve().parents[1]

BACKBONE = dict(text_hidden=32, text_layers=2, text_heads=2, text_intermediate=64, max_positions=1024,
                image_size=32, patch_size=8, vision_hidden=32, vision_layers=2, vision_heads=2,
                vision_intermediate=64)
N = 4


@pytest.fixture(scope="module")
def vqa_dir(tmp_path_factory):
    # The tokenizer is trained on a same-config split so it knows the words; the recipe generates its own.
    words = tmp_path_factory.mktemp("words")
    generate_benchmark(SynthConfig(n=N, seed=5, split="train", suite="mixed", long_side=400), words)
    corpus = [t for s in read_vstar(words) for t in (s.question, *s.options, *s.targets)] * 4
    cfg = TinyBackboneConfig(**BACKBONE)
    model, processor = build_tiny_llava(cfg, train_tokenizer(corpus, vocab_size=500))
    return save_llava(model, processor, tmp_path_factory.mktemp("vqa_tiny"), cfg)


def test_option_nll():
    assert option_nll([0.0, 0.0], 0, "likelihood", 0) == pytest.approx(np.log(2))
    assert option_nll([-0.1, -5.0], 0, "likelihood", 0) < option_nll([-0.1, -5.0], 1, "likelihood", 0)
    assert option_nll([0.25, 0.75], 1, "letter", 1) == pytest.approx(-np.log(0.75))
    assert option_nll(None, 1, "likelihood", 0) == 1.0


def test_collect_then_train_policy(vqa_dir, tmp_path):
    """``seal train policy``'s recipe on the VoVNet stack with a tiny head: a few CPU-seconds."""
    ckpt = tmp_path / "policy_head"
    cfg = load([ROOT / "configs" / "train" / "policy" / "vovnet.yaml"],
               [f"models.vqa_path={vqa_dir}", "models.localizer=oracle", "agent.max_new_tokens=4",
                "head.hidden_dim=16", "head.dropout=0.0", "policy_train.stage1_steps=10", "train.max_steps=50",
                "train.batch_size=16", "train.lr=0.01", "train.log_every=10", f"train.out_dir={tmp_path / 'run'}",
                f"policy_train.export_dir={ckpt}", f"policy_data.path={tmp_path / 'pd.npz'}",
                f"policy_data.bench_dir={tmp_path / 'synth_train'}", f"synth.n={N}", "synth.seed=5",
                "synth.long_side=400", "synth.split=train", "synth.suite=mixed"],
               cls=command_config("train-policy"))
    summary = run(cfg, log=lambda m: None, progress=False)

    assert (tmp_path / "synth_train" / "categories.json").is_file()
    assert all("synth_train_" in s.question_id for s in read_vstar(tmp_path / "synth_train"))
    data = load_policy_data(tmp_path / "pd.npz")
    assert len(data) == N and summary["n"] == N
    assert data.features.shape == (N, feature_dim(BACKBONE["text_hidden"], "hidden_entropy_margin"))
    assert np.all(data.costs[:, 0] == 0)
    # full >= coarse > no (the tiny processor's fixed 32 px input makes coarse and full cost the same)
    assert np.all(data.costs[:, 2] >= data.costs[:, 1]) and np.all(data.costs[:, 1] > 0)
    assert np.all(np.isfinite(data.task_loss)) and np.all(data.task_loss >= 0)
    assert data.coarse_margin is not None and np.all(data.coarse_margin >= 0)  # what the escalation replays
    assert summary["train"]["escalation"]["margin_threshold"] == cfg.policy.escalation_margin_threshold
    assert data.entropy is not None and list(data.ids) == [s.question_id for s in read_vstar(tmp_path / "synth_train")]
    assert (ckpt / "head.safetensors").is_file() and (ckpt / "head.json").is_file()
    manifest = read_manifest(ckpt, "policy_head")
    assert manifest.trained_against["vqa"]["path"] == str(vqa_dir)  # the head reads this model's text pass
    assert trained_lambda_cost(ckpt) == cfg.policy_train.lambda_cost == 0.05

    # a second run reuses the npz (no agent run): same data, new head
    mtime = (tmp_path / "pd.npz").stat().st_mtime_ns
    run(cfg, log=lambda m: None, progress=False)
    assert (tmp_path / "pd.npz").stat().st_mtime_ns == mtime
