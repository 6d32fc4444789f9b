"""Entropy-based adaptive patch selection (vwm/entropy.py, seed 003): the cascade's budget arithmetic and the
three modes on hand-computed maps, score propagation, the entropy keep mode removing real tokens from a real
tiny LLaVA forward (seal/vqa/token_keep.py), and ``seal inspect patches``."""

import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest
from PIL import Image

from seal.core.errors import ConfigError
from tests.cli_helpers import last_json, run_cli
from vwm.entropy import (EntropyConfig, draw_selection, grey_levels, patch_entropy, select_image_patches,
                         select_patches, token_groups)

T, F = True, False


def hand_map():
    """(8, 8) L1 entropies. Pooled by hand:
    L2 (4 x 4): (0,0) = 8/4 = 2; (0,2) = 4/4 = 1; (2,2) (2,3) (3,2) (3,3) = 1.5; the rest 0.
    L3 (2 x 2): (0,0) = 8/16 = 0.5; (0,1) = 4/16 = 0.25; (1,0) = 0; (1,1) = 1.5.
    Propagated L3 scores (max with the L2 children): [[2, 1], [0, 1.5]]."""
    e = np.zeros((8, 8))
    e[0, 0] = 8.0
    e[0, 5] = 4.0
    e[4:, 4:] = 1.5
    return e


def counts(sel):
    return (sel.stats.kept_per_level["L1"], sel.stats.kept_per_level["L2"], sel.stats.kept_per_level["L3"])


def assert_partition(sel):
    """Every smallest cell is covered by exactly one kept patch."""
    cover = sel.l1.astype(int) + np.kron(sel.l2, np.ones((2, 2), int)) + np.kron(sel.l3, np.ones((4, 4), int))
    assert (cover == 1).all()


def test_budget_arithmetic_on_a_hand_map():
    # alpha 0.25: budget = round(0.25 * 64) = 16, base = 4 (2 x 2 L3), k = (16 - 4) // 3 = 4 splits.
    # Ranking: L3(0,0)=2, L2(0,0)=2 (tie: L3 first), L3(1,1)=1.5, L2(2,2)=1.5 (raster order), ...
    sel = select_patches(hand_map(), EntropyConfig("budget", alpha=0.25))
    s = sel.stats
    assert (s.budget, s.base_tokens, s.base_small_tokens, s.k) == (16, 4, 64, 4)
    assert (s.splits_l3, s.splits_l2, s.extra_l2, s.extra_l1, s.kept_tokens) == (2, 2, 6, 6, 16)
    assert sel.l3.tolist() == [[F, T], [T, F]]
    assert sel.l2.tolist() == [[F, T, F, F], [T, T, F, F], [F, F, F, T], [F, F, T, T]]
    expected_l1 = np.zeros((8, 8), bool)
    expected_l1[0:2, 0:2] = True
    expected_l1[4:6, 4:6] = True
    assert (sel.l1 == expected_l1).all()
    assert counts(sel) == (8, 6, 2)
    assert s.kept_share == 0.25
    assert_partition(sel)


def test_a_larger_budget_spends_more_splits_in_score_order():
    # alpha 0.5: budget 32, k = (32 - 4) // 3 = 9: the 7 above plus L3(0,1) (score 1, propagated) and its
    # child L2(0,2) (entropy 1); kept = 4 + 3 * 9 = 31 (within 2 of the budget).
    sel = select_patches(hand_map(), EntropyConfig("budget", alpha=0.5))
    assert (sel.stats.budget, sel.stats.k, sel.stats.kept_tokens) == (32, 9, 31)
    assert sel.l3.tolist() == [[F, F], [T, F]]
    assert sel.l2.tolist() == [[F, T, F, T], [T, T, T, T], [F, F, F, F], [F, F, F, F]]
    assert counts(sel) == (24, 6, 1)
    assert_partition(sel)


def test_a_budget_below_the_coarsest_cover_keeps_the_l3_patches():
    sel = select_patches(hand_map(), EntropyConfig("budget", alpha=0.03))  # budget round(1.92) = 2 < base 4
    assert (sel.stats.budget, sel.stats.k, sel.stats.kept_tokens) == (2, 0, 4)
    assert sel.l3.all() and not sel.l2.any() and not sel.l1.any()


def test_score_propagation_opens_the_parent_of_a_detailed_corner():
    # L3(0,0) averages one very busy cell (16 bits -> pooled 1.0) with flat ones; L3(1,1) is evenly 1.5.
    # One split (budget 7 = 4 + 3): without propagation L3(1,1) (1.5 > 1.0) would be split; the busy
    # L2 child (16 / 4 = 4) lifts its parent's score to 4, so L3(0,0) is split.
    e = np.zeros((8, 8))
    e[0, 0] = 16.0
    e[4:, 4:] = 1.5
    sel = select_patches(e, EntropyConfig("budget", alpha=7 / 64))
    assert (sel.stats.budget, sel.stats.k, sel.stats.kept_tokens) == (7, 1, 7)
    assert sel.l3.tolist() == [[F, T], [T, T]]
    assert sel.l2[:2, :2].all() and counts(sel) == (0, 4, 3)
    # v1 propagates too: with an L3 threshold of 2 the pooled 1.0 alone would keep the corner coarse
    v1 = select_patches(e, EntropyConfig("v1", thresholds=(3.0, 2.0)))
    assert v1.l3.tolist() == [[F, T], [T, T]] and v1.l1[:2, :2].all() and counts(v1) == (4, 3, 3)


def test_v1_fixed_thresholds_on_the_hand_map():
    # thresholds (L2 1.5, L3 1.0): L3 split where the propagated score >= 1: (0,0)=2, (0,1)=1, (1,1)=1.5;
    # inside them L2 split where entropy >= 1.5: (0,0)=2 and the four 1.5; (0,2)=1 stays whole.
    sel = select_patches(hand_map(), EntropyConfig("v1", thresholds=(1.5, 1.0)))
    s = sel.stats
    assert (s.splits_l3, s.splits_l2, s.kept_tokens, s.budget, s.k, s.alpha) == (3, 5, 28, None, None, None)
    assert s.thresholds == (1.5, 1.0)
    assert sel.l3.tolist() == [[F, F], [T, F]]
    assert counts(sel) == (20, 7, 1)
    assert_partition(sel)
    # the defaults (3, 2): only L3(0,0) (score 2) opens, and its L2 children (<= 2 < 3) stay whole
    default = select_patches(hand_map(), EntropyConfig("v1"))
    assert counts(default) == (0, 4, 3) and default.stats.kept_tokens == 7


def test_v2_thresholds_follow_the_images_mean_entropy():
    # mean L3 entropy = (0.5 + 0.25 + 0 + 1.5) / 4 = 0.5625; alpha 2 -> both thresholds 1.125:
    # L3 splits (0,0)=2, (1,1)=1.5; L2 splits (0,0)=2 and the four 1.5 -> kept 4 + 3 * 7 = 25.
    sel = select_patches(hand_map(), EntropyConfig("v2", alpha=2.0))
    assert sel.stats.thresholds == (1.125, 1.125)
    assert (sel.stats.splits_l3, sel.stats.splits_l2, sel.stats.kept_tokens) == (2, 5, 25)
    assert counts(sel) == (20, 3, 2)
    # a larger multiple keeps everything coarse; scaling the whole map scales the thresholds with it
    assert select_patches(hand_map(), EntropyConfig("v2", alpha=4.0)).stats.kept_tokens == 4
    scaled = select_patches(hand_map() * 3, EntropyConfig("v2", alpha=2.0))
    assert (scaled.l1 == sel.l1).all() and (scaled.l3 == sel.l3).all()


def test_random_maps_always_partition_and_meet_the_budget_arithmetic():
    rng = np.random.default_rng(0)
    for trial in range(20):
        e = rng.integers(0, 4, size=(8, 12)).astype(float)  # ties on purpose
        for alpha in (0.1, 0.3, 0.5, 0.8, 1.0):
            sel = select_patches(e, EntropyConfig("budget", alpha=alpha))
            s = sel.stats
            assert_partition(sel)
            assert s.kept_tokens == s.base_tokens + 3 * min(s.k, 6 + 24)
            assert s.kept_tokens == sum(s.kept_per_level.values()) <= max(s.budget, s.base_tokens)
            assert s.budget - s.kept_tokens <= 2 or s.kept_tokens == 96


def test_patch_entropy_of_hand_made_cells():
    grey = np.zeros((8, 8))
    grey[0:4, 0:4][::2, :] = 200.0  # half 0, half 200: 1 bit
    grey[0:4, 4:8] = np.array([0, 64, 128, 192])[None, :]  # four levels, equally often: 2 bits
    grey[4:8, 0:4] = 77.0  # flat: 0 bits
    grey[4:8, 4:8] = np.arange(16).reshape(4, 4) * 16.0  # 16 distinct levels: 4 bits
    np.testing.assert_allclose(patch_entropy(grey, 4, bins=256), [[1, 2], [0, 4]])
    # 4 bins of 64 levels each: the last cell's 16 levels fall 4 by 4 into the 4 bins -> 2 bits
    np.testing.assert_allclose(patch_entropy(grey, 4, bins=4), [[1, 2], [0, 2]])
    assert grey_levels(np.full((1, 1, 3), 100.0))[0, 0] == pytest.approx(100.0)
    with pytest.raises(ValueError, match="5 px cells"):
        patch_entropy(grey, 5)


def test_token_groups_cover_the_grid_once_coarse_patches_at_their_top_left():
    sel = select_patches(hand_map(), EntropyConfig("budget", alpha=0.25))
    groups = token_groups(sel)
    assert len(groups) == sel.stats.kept_tokens == 16
    assert sorted(np.concatenate(groups).tolist()) == list(range(64))
    firsts = [int(g.min()) for g in groups]
    assert firsts == sorted(firsts)
    by_first = {int(g.min()): sorted(g.tolist()) for g in groups}
    assert by_first[4] == [r * 8 + c for r in range(4) for c in range(4, 8)]  # L3(0,1): 16 cells from cell 4
    assert by_first[2] == [2, 3, 10, 11]  # L2(0,1)
    assert by_first[9] == [9]  # an L1 cell of the split L2(0,0)


def test_config_errors_name_the_field():
    with pytest.raises(ConfigError, match="vision_budget.entropy.alpha"):
        EntropyConfig(alpha=0.0)
    with pytest.raises(ConfigError, match="vision_budget.entropy.alpha.*budget"):
        EntropyConfig("budget", alpha=1.5)
    assert EntropyConfig("v2", alpha=1.5).alpha == 1.5
    with pytest.raises(ConfigError, match="vision_budget.entropy.mode"):
        EntropyConfig("v3")
    with pytest.raises(ConfigError, match="vision_budget.entropy.thresholds"):
        EntropyConfig("v1", thresholds=(1.0,))
    with pytest.raises(ConfigError, match="vision_budget.entropy.bins"):
        EntropyConfig(bins=1)
    with pytest.raises(ValueError, match="multiples of 4"):
        select_patches(np.zeros((6, 8)), EntropyConfig())


def test_the_config_loader_builds_the_section_from_yaml_values():
    from seal.core.config import from_dict

    cfg = from_dict(EntropyConfig, {"mode": "v2", "alpha": 1.5, "thresholds": [2, 1]}, prefix="vision_budget.entropy.")
    assert cfg == EntropyConfig("v2", alpha=1.5, thresholds=(2.0, 1.0))
    with pytest.raises(ConfigError, match="vision_budget.entropy.mode"):
        from_dict(EntropyConfig, {"mode": "v4"}, prefix="vision_budget.entropy.")


# ---- the keep mode: real tokens removed from a real tiny LLaVA forward -------------------------------

@pytest.fixture(scope="module")
def vqa():
    from seal.vqa import VQAModel
    from tests.test_agent_fixtures import VWM
    from tests.vlm_fixtures import cached_tiny_vlm
    from vwm.layout import VWMConfig

    return VQAModel.load(cached_tiny_vlm("llava"), vwm_config=VWMConfig(**VWM))


def _encode(vqa, keep):
    from tests.test_agent_fixtures import QUESTION, scene

    vqa.keep_tokens(keep)
    try:
        return vqa.encode(QUESTION, vqa.memory(scene(), None)), vqa.last_image_tokens
    finally:
        vqa.keep_tokens(None)


@pytest.mark.parametrize("cfg", [EntropyConfig("budget", alpha=0.5), EntropyConfig("v1", thresholds=(1.0, 0.5)),
                                 EntropyConfig("v2", alpha=1.0)])
def test_the_model_reads_as_many_image_tokens_as_the_stats_say(vqa, cfg):
    import torch

    from seal.vqa.scoring import prompt_state
    from seal.vqa.token_keep import TokenKeep, entropy_selections

    full, n = _encode(vqa, None)
    keep = TokenKeep("entropy", entropy=cfg)
    kept, k = _encode(vqa, keep)
    (sel,) = entropy_selections(full["pixel_values"], [n], keep)  # the fixture: 32 px, 8 px patches, 4 x 4 tokens
    assert n == 16 and k == sel.stats.kept_tokens < n
    assert kept["input_ids"].shape[1] == full["input_ids"].shape[1] - (n - k)
    (features,) = kept["mm_encoder_outputs"]["image"].pooler_output
    with torch.no_grad():
        (all_feats,) = vqa.model.model.get_image_features(pixel_values=full["pixel_values"],
                                                          return_dict=True).pooler_output
    expected = torch.stack([all_feats[torch.as_tensor(g)].mean(0) for g in token_groups(sel)])
    torch.testing.assert_close(features, expected)
    hidden, logits = prompt_state(vqa.model, kept)
    assert hidden.shape[0] == kept["input_ids"].shape[1] and torch.isfinite(logits).all()


def test_a_full_budget_reads_every_token_and_gives_the_full_logits(vqa):
    import torch

    from seal.vqa.scoring import prompt_state
    from seal.vqa.token_keep import TokenKeep

    full, n = _encode(vqa, None)
    kept, k = _encode(vqa, TokenKeep("entropy", entropy=EntropyConfig("budget", alpha=1.0)))
    assert k == n and torch.equal(kept["input_ids"].cpu(), full["input_ids"])
    torch.testing.assert_close(prompt_state(vqa.model, kept)[1], prompt_state(vqa.model, full)[1],
                               atol=1e-5, rtol=1e-5)


def test_the_shipped_tiny_model_reads_the_selected_tokens():
    """checkpoints/vqa_tiny (read only): 128 px, 16 px patches -> an 8 x 8 grid, three real levels."""
    from pathlib import Path

    from seal.vqa import VQAModel
    from seal.vqa.token_keep import TokenKeep, entropy_selections
    from tests.test_agent_fixtures import QUESTION, scene

    vqa = VQAModel.load(Path(__file__).resolve().parents[1] / "checkpoints" / "vqa_tiny")
    full = vqa.encode(QUESTION, vqa.memory(scene(), None))
    n = vqa.last_image_tokens
    proc = vqa.processor.image_processor
    keep = TokenKeep("entropy", entropy=EntropyConfig("budget", alpha=0.3), pixel_mean=tuple(proc.image_mean),
                     pixel_std=tuple(proc.image_std))
    vqa.keep_tokens(keep)
    vqa.encode(QUESTION, vqa.memory(scene(), None))
    sels = entropy_selections(full["pixel_values"], [64] * len(full["pixel_values"]), keep)
    assert n == 64 * len(sels)
    assert vqa.last_image_tokens == sum(s.stats.kept_tokens for s in sels)
    for s in sels:  # budget round(0.3 * 64) = 19, base 4, k = 5 -> 4 + 15 = 19
        assert (s.stats.budget, s.stats.k, s.stats.kept_tokens) == (19, 5, 19)


def test_the_entropy_mode_is_refused_where_the_grid_cannot_be_cascaded():
    import torch

    from seal.vqa.token_keep import TokenKeep, entropy_selections

    with pytest.raises(ConfigError, match="vision_budget.entropy"):
        TokenKeep("entropy")
    keep = TokenKeep("entropy", entropy=EntropyConfig())
    with pytest.raises(ConfigError, match="vision_budget.pruning_mode.*multiple of 4.*9 tokens"):
        entropy_selections(torch.zeros(1, 3, 24, 24), [9], keep)


# ---- Qwen2.5-VL: the merged-token grid, explicit M-RoPE positions --------------------------------------

@pytest.fixture(scope="module")
def qwen():
    from seal.vqa import VQAModel
    from tests.test_agent_fixtures import VWM
    from tests.vlm_fixtures import cached_tiny_vlm
    from vwm.layout import VWMConfig

    return VQAModel.load(cached_tiny_vlm("qwen2_5_vl"), vwm_config=VWMConfig(**VWM))


def test_qwen_keeps_one_token_per_patch_at_its_top_left_cells_position(qwen):
    import torch

    from seal.vqa.scoring import prompt_state
    from seal.vqa.token_keep import TokenKeep, keep_mrope_vision_tokens
    from tests.test_agent_fixtures import QUESTION, scene

    enc = qwen.encode(QUESTION, qwen.memory(scene(), None))
    assert enc["image_grid_thw"].tolist() == [[1, 8, 8]]  # 7 px patches, 2 x 2 merge: a 4 x 4 token grid
    ids = enc["input_ids"][0]
    image_rows = torch.nonzero(ids == qwen.image_token_id).flatten()
    full_pos, _ = qwen.model.model.get_rope_index(enc["input_ids"], enc["mm_token_type_ids"],
                                                  image_grid_thw=enc["image_grid_thw"],
                                                  attention_mask=enc["attention_mask"])
    # budget 8 of 16 cells: base 1, k = (8 - 1) // 3 = 2 splits -> 7 tokens
    kept = keep_mrope_vision_tokens(qwen.model, enc, qwen.image_token_id,
                                    TokenKeep("entropy", entropy=EntropyConfig("budget", alpha=0.5)))
    n_image = int((kept["input_ids"] == qwen.image_token_id).sum())
    assert len(image_rows) == 16 and n_image == 7
    assert kept["input_ids"].shape[1] == ids.shape[0] - 9 and kept["position_ids"].shape == (3, 1, ids.shape[0] - 9)
    (features,) = kept["mm_encoder_outputs"]["image"].pooler_output
    assert features.shape[0] == 7
    # text keeps its own positions (so what follows the image is still placed after the whole grid)
    text = ids != qwen.image_token_id
    torch.testing.assert_close(kept["position_ids"][:, 0, kept["input_ids"][0] != qwen.image_token_id],
                               full_pos[:, 0, text])
    # each kept image token sits at a cell's own (t, h, w), and distinct tokens at distinct cells
    image_pos = kept["position_ids"][:, 0, kept["input_ids"][0] == qwen.image_token_id].T.tolist()
    cells = full_pos[:, 0, image_rows].T.tolist()
    assert all(p in cells for p in image_pos) and len({tuple(p) for p in image_pos}) == 7
    assert image_pos[0] == cells[0]  # the first token is the grid's top-left cell
    hidden, logits = prompt_state(qwen.model, kept)
    assert hidden.shape[0] == kept["input_ids"].shape[1] and torch.isfinite(logits).all()
    # every token kept: the same prompt, the same logits as the model's own positions
    every = keep_mrope_vision_tokens(qwen.model, enc, qwen.image_token_id,
                                     TokenKeep("entropy", entropy=EntropyConfig("budget", alpha=1.0)))
    assert torch.equal(every["input_ids"], enc["input_ids"]) and torch.equal(every["position_ids"], full_pos)
    torch.testing.assert_close(prompt_state(qwen.model, every)[1], prompt_state(qwen.model, enc)[1],
                               atol=1e-5, rtol=1e-5)


def test_qwen_refuses_a_grid_the_cascade_cannot_cover(qwen):
    from seal.vqa.token_keep import TokenKeep, keep_mrope_vision_tokens

    image = Image.new("RGB", (28, 28), (90, 20, 200))  # 4 x 4 patches -> a 2 x 2 merged grid
    enc = qwen.processor(images=[image], text=["<|vision_start|><|image_pad|><|vision_end|>What?"],
                         return_tensors="pt")
    with pytest.raises(ConfigError, match="multiples of 4.*2x2"):
        keep_mrope_vision_tokens(qwen.model, enc, qwen.image_token_id, TokenKeep("entropy", entropy=EntropyConfig()))


# ---- seal inspect patches ---------------------------------------------------------------------------

def _image(tmp_path):
    """112 x 112 px: flat grey with a noisy 28 x 28 corner (so the corner is the busy part)."""
    rgb = np.full((112, 112, 3), 128, np.uint8)
    rgb[:28, :28] = np.random.default_rng(0).integers(0, 256, (28, 28, 3))
    path = tmp_path / "img.png"
    Image.fromarray(rgb).save(path)
    return path, rgb


def test_inspect_patches_writes_the_picture_and_its_stats(tmp_path, capsys):
    path, rgb = _image(tmp_path)
    out = tmp_path / "vis" / "patches.png"
    rc, stdout, err = run_cli(["inspect", "patches", "--image", path, "--alpha", "0.3", "--out", out, "--json"], capsys)
    assert rc == 0, err
    record = json.loads(out.with_suffix(".json").read_text())
    assert record == last_json(stdout)
    # 112 px / 14 px = an 8 x 8 grid: budget round(0.3 * 64) = 19, base 4, k 5 -> 19 tokens
    stats = record["stats"]
    assert record["grid"] == [8, 8] and record["analysis_size"] == [112, 112]
    assert (stats["budget"], stats["base_tokens"], stats["k"], stats["kept_tokens"]) == (19, 4, 5, 19)
    assert len(record["patches"]) == 19 and ["L1", 0, 0, 14, 14] in record["patches"]  # the noisy corner is fine
    drawn = np.asarray(Image.open(out).convert("RGB"))
    expected = draw_selection(rgb, select_image_patches(rgb, 14, EntropyConfig(alpha=0.3)), 14)
    assert drawn.shape == rgb.shape and (drawn == expected).all() and (drawn != rgb).any()


@pytest.mark.parametrize("mode", ["v1", "v2"])
def test_inspect_patches_threshold_modes(tmp_path, capsys, mode):
    path, _ = _image(tmp_path)
    out = tmp_path / f"{mode}.png"
    rc, stdout, err = run_cli(["inspect", "patches", "--image", path, "--mode", mode, "--alpha", "1.0",
                               "--out", out], capsys)
    assert rc == 0, err
    assert stdout.startswith(f"{path}: kept ")
    stats = json.loads(out.with_suffix(".json").read_text())["stats"]
    assert stats["mode"] == mode and stats["budget"] is None and stats["thresholds"] is not None
    assert stats["kept_per_level"]["L1"] >= 4 and 4 <= stats["kept_tokens"] < 64  # the noisy corner, flat elsewhere


def test_inspect_patches_errors_are_one_line(tmp_path, capsys):
    path, _ = _image(tmp_path)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image at all")
    cases = [(["--image", tmp_path / "missing.png", "--out", tmp_path / "a.png"], "missing.png"),
             (["--image", broken, "--out", tmp_path / "b.png"], "broken.png"),
             (["--image", path, "--alpha", "0", "--out", tmp_path / "c.png"], "--alpha"),
             (["--image", path, "--alpha", "-0.5", "--out", tmp_path / "d.png"], "--alpha"),
             (["--image", path, "--alpha", "1.5", "--out", tmp_path / "e.png"], "vision_budget.entropy.alpha"),
             (["--image", path, "--out", tmp_path / "f.jpg"], ".png")]
    for argv, named in cases:
        rc, _, err = run_cli(["inspect", "patches", *argv], capsys)
        assert rc == 2 and named in err and len(err.strip().splitlines()) == 1, (argv, err)
    assert not any(tmp_path.glob("[a-f].png"))
