"""The learnable token merger (seal/vqa/merger.py) and its forward glue (seal/vqa/merged_forward.py):
shapes of both variants, a hard assignment at low temperature, Gumbel top-k centres, a real tiny LLaVA
reading exactly M tokens per image (and exactly its own logits when M = N with the identity assignment),
the training batch's labels, and a 3-step ``seal train merger`` run whose export loads."""

import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch

from seal.core.errors import ConfigError
from seal.vqa import VQAModel
from seal.vqa.examples import build_training_example, collate
from seal.vqa.merged_forward import merged_batch, merged_prompt, tower_features
from seal.vqa.merger import MergerConfig, TokenMerger, anneal_temperature, load_merger, merge_sparsity_loss
from tests.test_agent_fixtures import QUESTION, VWM, scene
from tests.vlm_fixtures import cached_tiny_vlm
from vwm.layout import VisualWorkingMemory, VWMConfig

D_V, D_T = 24, 16


def _merger(variant="simple", tokens=4, temperature=1.0, vision_dim=D_V, text_dim=D_T):
    torch.manual_seed(0)
    m = TokenMerger(MergerConfig(variant=variant, tokens=tokens, vision_dim=vision_dim, text_dim=text_dim,
                                 hidden_dim=16, heads=2, temperature_start=temperature, temperature_end=temperature))
    return m.eval()


@pytest.mark.parametrize("variant", ["simple", "question_aware"])
def test_shapes_of_both_variants(variant):
    merger = _merger(variant)
    feats = torch.randn(3, 10, D_V)
    text, mask = torch.randn(3, 5, D_T), torch.tensor([[True] * 5, [True] * 3 + [False] * 2, [True] + [False] * 4])
    out = merger(feats, 4, text, mask) if variant == "question_aware" else merger(feats, 4)
    assert out.merged.shape == (3, 4, D_V) and out.assignment.shape == (3, 10, 4)
    assert out.centres.shape == (3, 4) and out.importance.shape == (3, 10)
    torch.testing.assert_close(out.assignment.sum(-1), torch.ones(3, 10))
    assert (out.centres.diff(dim=-1) > 0).all()  # distinct, in raster order
    # each merged token is a convex combination of the image's tokens
    assert torch.allclose(out.merged, (out.assignment / out.assignment.sum(1, keepdim=True)).transpose(1, 2) @ feats,
                          atol=1e-5)
    if variant == "question_aware":
        with pytest.raises(ValueError, match="text embeddings"):
            merger(feats, 4)
        other = merger(feats, 4, torch.randn(3, 5, D_T), mask)  # another question, other importance
        assert not torch.allclose(other.importance, out.importance)


def test_low_temperature_gives_a_hard_assignment():
    merger = _merger(tokens=6)
    feats = torch.randn(2, 20, D_V)
    soft = merger(feats).assignment
    assert soft.max(-1).values.min() < 0.9  # at temperature 1 the rows are soft
    merger.set_temperature(1e-4)
    hard = merger(feats).assignment
    assert ((hard.max(-1).values - 1).abs() < 1e-3).all()
    assert ((hard.sum(1) >= 1 - 1e-3)).all()  # every centre keeps at least its own token


def test_gumbel_top_k_draws_m_distinct_centres_in_training_and_plain_top_k_in_eval():
    merger = _merger(tokens=5)
    feats = torch.randn(4, 16, D_V)
    merger.train()
    draws = [merger(feats).centres for _ in range(6)]
    for centres in draws:
        assert centres.shape == (4, 5)
        assert all(len(set(row.tolist())) == 5 for row in centres)
    assert any(not torch.equal(draws[0], d) for d in draws[1:])  # the noise changes the choice
    merger.eval()
    out = merger(feats)
    expected = torch.topk(out.importance, 5, dim=-1).indices.sort(-1).values
    assert torch.equal(out.centres, expected) and torch.equal(merger(feats).centres, out.centres)


def test_training_gate_passes_the_task_gradient_to_the_scorer():
    merger = _merger(tokens=3).train()
    out = merger(torch.randn(2, 8, D_V))
    out.merged.pow(2).sum().backward()
    assert merger.scorer[-1].weight.grad is not None and merger.scorer[-1].weight.grad.abs().sum() > 0


def test_temperature_schedule_and_sparsity_loss():
    assert anneal_temperature(0, 1.0, 0.1, 100) == 1.0
    assert anneal_temperature(50, 1.0, 0.1, 100) == pytest.approx(0.55)
    assert anneal_temperature(100, 1.0, 0.1, 100) == anneal_temperature(900, 1.0, 0.1, 100) == 0.1
    logits = torch.full((2, 8), 10.0)  # every token kept: 8 of 8, target 4
    assert float(merge_sparsity_loss(logits, 4)) == pytest.approx(0.25, abs=1e-3)
    assert float(merge_sparsity_loss(torch.tensor([[10.0] * 4 + [-10.0] * 4]), 4)) < 1e-6


@pytest.mark.parametrize("bad, field", [(dict(variant="kmeans"), "merger.variant"),
                                        (dict(tokens=0), "merger.tokens"),
                                        (dict(hidden_dim=10, heads=4), "merger.hidden_dim"),
                                        (dict(temperature_start=0.1, temperature_end=1.0), "merger.temperature_end")])
def test_config_errors_name_the_field(bad, field):
    with pytest.raises(ConfigError, match=field):
        MergerConfig(**bad)


# ---- the real tiny LLaVA -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def vqa():
    return VQAModel.load(cached_tiny_vlm("llava"), vwm_config=VWMConfig(**VWM))


def _prompt(vqa):
    vwm = VisualWorkingMemory(global_image=scene(), config=vqa.vwm_config)
    vwm.add_target("striped star", (300, 200, 320, 220), 1.0)
    return vqa.encode(QUESTION, vwm)  # global view + one crop: 2 images


def _model_merger(vqa, variant, tokens, temperature):
    n_v = int(tower_features(vqa.model, torch.zeros(1, 3, 32, 32)).shape[-1])
    return _merger(variant, tokens, temperature, vision_dim=n_v, text_dim=vqa.hidden_size)


@pytest.mark.parametrize("variant", ["simple", "question_aware"])
def test_the_model_reads_exactly_m_tokens_per_image(vqa, variant):
    enc = _prompt(vqa)
    n_images, n = enc["pixel_values"].shape[0], int((enc["input_ids"] == vqa.image_token_id).sum())
    per_image = n // n_images
    merged = merged_prompt(vqa.model, _model_merger(vqa, variant, 5, 0.3), enc, vqa.image_token_id, tokens=5)
    assert int((merged["input_ids"] == vqa.image_token_id).sum()) == 5 * n_images
    assert merged["input_ids"].shape[1] == enc["input_ids"].shape[1] - n_images * (per_image - 5)
    assert [f.shape for f in merged["mm_encoder_outputs"]["image"].pooler_output] == [(5, vqa.hidden_size)] * 2
    with torch.no_grad():
        logits = vqa.model(**merged).logits
    assert logits.shape[1] == merged["input_ids"].shape[1] and torch.isfinite(logits).all()


def test_tower_features_are_what_the_projector_reads(vqa):
    enc = _prompt(vqa)
    with torch.no_grad():
        own = vqa.model.model.get_image_features(pixel_values=enc["pixel_values"], return_dict=True).pooler_output
        ours = vqa.model.model.multi_modal_projector(tower_features(vqa.model, enc["pixel_values"]))
    torch.testing.assert_close(torch.stack(list(own)), ours)


def test_m_equal_n_with_the_identity_assignment_is_the_plain_forward(vqa):
    enc = _prompt(vqa)
    n = int((enc["input_ids"] == vqa.image_token_id).sum()) // enc["pixel_values"].shape[0]
    with torch.no_grad():
        plain = vqa.model(**enc).logits
        merger = _model_merger(vqa, "simple", n, 1e-4)  # every token a centre, each its own (cosine 1)
        merged = merged_prompt(vqa.model, merger, enc, vqa.image_token_id, tokens=n)
        assert torch.equal(merged["input_ids"], enc["input_ids"])
        torch.testing.assert_close(vqa.model(**merged).logits, plain, atol=1e-4, rtol=1e-4)
        merger.set_temperature(1.0)  # a soft assignment mixes the tokens: another forward
        soft = vqa.model(**merged_prompt(vqa.model, merger, enc, vqa.image_token_id, tokens=n)).logits
    assert (soft - plain).abs().max() > 1e-3


@pytest.mark.parametrize("variant", ["simple", "question_aware"])
def test_training_batch_keeps_the_reply_labels_and_trains_only_the_merger(vqa, variant):
    vwm = VisualWorkingMemory(global_image=scene(), config=vqa.vwm_config)
    vwm.add_target("striped star", (300, 200, 320, 220), 1.0)
    rows = [build_training_example(vqa.processor, QUESTION, "red", vwm),
            build_training_example(vqa.processor, QUESTION + " Answer briefly.", "the star is red",
                                   VisualWorkingMemory(global_image=scene(), config=vqa.vwm_config))]
    batch = collate([{**r, "attention_mask": torch.ones_like(r["input_ids"])} for r in rows], vqa.pad_id)
    merger = _model_merger(vqa, variant, 3, 0.5).train()
    vqa.model.requires_grad_(False)
    inputs, out = merged_batch(vqa.model, merger, batch, vqa.image_token_id, tokens=3)
    assert out.merged.shape[:2] == (3, 3)  # 2 + 1 images
    assert [int((r == vqa.image_token_id).sum()) for r in inputs["input_ids"]] == [6, 3]
    for r in range(2):
        real = batch["attention_mask"][r].bool()
        old = batch["labels"][r][real & (batch["input_ids"][r] != vqa.image_token_id)]
        keep = inputs["attention_mask"][r].bool() & (inputs["input_ids"][r] != vqa.image_token_id)
        assert torch.equal(inputs["labels"][r][keep], old) and (old != -100).any()
    logits = vqa.model(**{k: v for k, v in inputs.items() if k != "labels"}).logits
    loss = torch.nn.functional.cross_entropy(logits[:, :-1].transpose(1, 2), inputs["labels"][:, 1:].clamp_min(0),
                                             reduction="none")[inputs["labels"][:, 1:] != -100].mean()
    loss.backward()
    assert merger.encode[1].weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in vqa.model.parameters())


# ---- seal train merger -----------------------------------------------------------------------------
def test_seal_train_merger_three_steps_writes_a_loadable_export(tmp_path, capsys):
    from seal.core.manifest import read_manifest
    from tests.cli_helpers import last_json, run_cli

    out, export = tmp_path / "run", tmp_path / "export"
    rc, stdout, _ = run_cli(["train", "merger", "--recipe", "tiny", "--train.max_steps=3", f"--train.out_dir={out}",
                             f"--merger_train.export_dir={export}", "--synth.n=2", "--data.cache_dir=\"\"",
                             "--merger.anneal_steps=4", "--train.threads=1"], capsys)
    assert rc == 0
    summary = last_json(stdout)
    assert summary["kind"] == "merger" and summary["steps"] == 3 and summary["final"]["tokens"] in (16.0, 32.0)
    manifest = read_manifest(export, "merger")
    assert manifest.trained_against["vqa"]["path"].endswith("vqa_tiny")
    assert manifest.config["merger"]["vision_dim"] == 128 and manifest.config["merger"]["variant"] == "simple"
    merger = load_merger(export)
    assert not merger.training
    # the third step ran at step index 2 of a 4-step annealing 1.0 -> 0.1
    assert float(merger.temperature) == pytest.approx(anneal_temperature(2, 1.0, 0.1, 4))
    assert len((export / "train_log.jsonl").read_text().splitlines()) >= 1
    assert json.loads((out / "train_summary.json").read_text())["steps"] == 3
    # resumed from its checkpoint, the schedule goes on where it stopped (step index 4 of 5 steps)
    rc, stdout, _ = run_cli(["train", "merger", "--recipe", "tiny", "--train.max_steps=5", f"--train.out_dir={out}",
                             f"--merger_train.export_dir={export}", "--synth.n=2", "--data.cache_dir=\"\"",
                             "--merger.anneal_steps=8", "--train.threads=1"], capsys)
    assert rc == 0 and last_json(stdout)["steps"] == 5
    assert float(load_merger(export).temperature) == pytest.approx(anneal_temperature(4, 1.0, 0.1, 8))


def test_the_merger_configs_import_no_torch():
    import subprocess
    import sys

    probe = ("import sys, seal.vqa.merger_config, training.merger_config\n"
             "print(sorted(m for m in ('torch', 'transformers', 'peft') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]", out


def test_bench_summary_pairs_merger_and_stride():
    from eval.bench_merger import summarize, wilson

    rows = [{"tag": "search", "full": True, "merger@8": True, "stride@8": False},
            {"tag": "search", "full": True, "merger@8": True, "stride@8": True},
            {"tag": "coarse", "full": False, "merger@8": False, "stride@8": False},
            {"tag": "coarse", "full": True, "merger@8": True, "stride@8": False}]
    report = summarize(rows, [8])
    assert report["accuracy"]["merger@8"]["acc"] == 0.75 and report["accuracy"]["stride@8"]["acc"] == 0.25
    assert report["merger_minus_stride"]["8"]["diff"] == 0.5
    low, high = report["merger_minus_stride"]["8"]["ci95"]
    assert 0.0 <= low < 0.5 < high <= 1.0
    assert report["by_tag"]["coarse"]["full"] == 0.5
    assert wilson(0, 10)[0] == 0.0 and 0.0 < wilson(5, 10)[0] < 0.5 < wilson(5, 10)[1] < 1.0


def test_the_shipped_merger_loads_and_fits_the_shipped_vqa_model():
    from seal.core.manifest import check_trained_against, read_manifest
    from seal.core.paths import PROJECT_ROOT

    path = PROJECT_ROOT / "checkpoints" / "merger_tiny"
    check_trained_against(read_manifest(path, "merger"), "vqa", PROJECT_ROOT / "checkpoints" / "vqa_tiny",
                          "retrain the merger")
    merger = load_merger(path)
    assert merger.cfg.variant == "simple" and merger.cfg.vision_dim == 128
    assert float(merger.temperature) == pytest.approx(0.1)
    out = merger(torch.randn(2, 64, 128), 16)
    assert out.merged.shape == (2, 16, 128) and torch.isfinite(out.merged).all()


@pytest.mark.parametrize("name, variant", [("tiny", "simple"), ("tiny_question", "question_aware")])
def test_the_merger_recipes_load_through_the_real_parser(name, variant):
    from seal.config import load
    from seal.core.paths import PROJECT_ROOT
    from training.merger_config import TrainMergerConfig

    cfg = load([PROJECT_ROOT / "configs" / "train" / "merger" / f"{name}.yaml"], cls=TrainMergerConfig,
               search_profile=False)
    assert cfg.merger.variant == variant and cfg.merger_train.tokens == [16, 32] and not cfg.data.attribute_maps
    with pytest.raises(ConfigError, match="merger_train.views"):
        load([], ["merger_train.views=[none]"], cls=TrainMergerConfig, search_profile=False)
