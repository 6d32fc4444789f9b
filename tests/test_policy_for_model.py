"""``seal train policy --vqa DIR`` fits a value-of-vision head to any VQA model (here a tiny random Qwen2.5-VL),
keeps its data, run and head apart from the shipped ones, and the head then decides in ``seal ask``; policy data
collected with one VQA model is never reused for another."""

import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from seal.cli.main import main
from seal.core.manifest import fingerprint, read_manifest
from tests.test_agent_fixtures import OPTIONS, QUESTION, write_scene
from tests.vlm_fixtures import cached_tiny_vlm

SMALL_RUN = ["models.localizer=oracle", "agent.max_new_tokens=4", "head.hidden_dim=16", "head.dropout=0.0",
             "policy_train.stage1_steps=5", "train.max_steps=20", "train.batch_size=8", "train.log_every=10",
             "synth.n=3", "synth.seed=5", "synth.long_side=400", "vwm.view_side_px=64", "vwm.crop_side_px=56"]


def _train(vqa, tmp_path, capsys, *extra):
    argv = ["train", "policy", "--vqa", str(vqa), f"--policy_data.bench_dir={tmp_path / 'synth_train'}",
            *(f"--{o}" for o in SMALL_RUN), *extra]
    assert main(argv) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    return out, json.loads(out.strip().splitlines()[-1])


def test_train_policy_for_another_vqa_model_then_ask_with_it(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # runs/policy/<model>/ lands here
    qwen = cached_tiny_vlm("qwen2_5_vl")
    out, summary = _train(qwen, tmp_path, capsys)
    home = tmp_path / "runs" / "policy" / os.path.basename(qwen)
    head = home / "head"
    assert summary["export_dir"] == str(os.path.relpath(head, tmp_path)) and summary["n"] > 0
    manifest = read_manifest(head, "policy_head")
    assert manifest.trained_against["vqa"]["fingerprint"] == fingerprint(qwen)
    assert (home / "policy_data_train.npz").is_file() and (home / "run").is_dir()
    # the head decides for that model (no baseline)
    image, ann = write_scene(tmp_path)
    trace = tmp_path / "trace"
    argv = ["ask", "--image", str(image), "--annotation", str(ann), f"--models.vqa_path={qwen}", "--localizer",
            "oracle", f"--policy.checkpoint={head}", "--question", QUESTION, "--options", *OPTIONS,
            "--vwm.view_side_px=64", "--vwm.crop_side_px=56", "--search.max_nodes=4", "--agent.max_new_tokens=4",
            "--quiet", "--trace-dir", str(trace)]
    assert main(argv) == 0, capsys.readouterr().err
    record = json.loads((trace / "trace.json").read_text())
    assert record["action"] in ("no", "coarse", "full") and record["answer"] in OPTIONS
    # the same data file is reused for the same model, collected again for another one
    out, _ = _train(qwen, tmp_path, capsys)
    assert "reusing policy data" in out
    llava = cached_tiny_vlm("llava")
    out, _ = _train(llava, tmp_path, capsys, f"--policy_data.path={home / 'policy_data_train.npz'}")
    assert "collected with another VQA model" in out
    sidecar = json.loads((home / "policy_data_train.json").read_text())
    assert sidecar["vqa_fingerprint"] == fingerprint(llava)
