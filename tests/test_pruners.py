"""Layer pruners (seal/vqa/pruners.py) through our own layer-by-layer forward (seal/vqa/pruned_forward.py): without
pruning it is the model's own forward; hard pruning (tokens really removed from the sequence and the KV cache) gives
the soft 0/1 key mask's logits, option scores and generations with shorter per-layer caches; the adversarial
recipe trains its optimizers on their own parameters and exports loadable heads."""

import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch

from seal.core.errors import ConfigError
from seal.vqa import VQAModel
from seal.vqa.pruned_forward import PrunedLM
from seal.vqa.pruners import LayerPruners, PrunerConfig, PrunerHead, keep_counts, top_k_keep
from seal.vqa.scoring import prompt_state, reply_token_logprobs
from tests.test_agent_fixtures import OPTIONS, QUESTION, VWM, scene
from tests.vlm_fixtures import cached_tiny_vlm
from training.config import TrainConfig
from training.loop import OptimGroup, train
from vwm.layout import VisualWorkingMemory, VWMConfig


@pytest.fixture(scope="module")
def vqa():
    return VQAModel.load(cached_tiny_vlm("llava"), vwm_config=VWMConfig(**VWM))


@pytest.fixture(scope="module")
def enc(vqa):
    """A prompt of two images (global view + one crop): two blocks of vision tokens."""
    image = scene()
    vwm = VisualWorkingMemory(global_image=image, config=vqa.vwm_config)
    vwm.add_target("striped star", (10.0, 10.0, 40.0, 40.0), 1.0)
    return vqa.encode(QUESTION, vwm)


def _pruners(vqa, layers, ratios, seed=0, position_slots=0):
    torch.manual_seed(seed)
    cfg = PrunerConfig(layers=layers, keep_ratios=ratios, position_slots=position_slots)
    return LayerPruners(cfg, vqa.hidden_size).eval()


def test_config_is_validated():
    with pytest.raises(ConfigError, match="pruners.keep_ratios"):
        PrunerConfig(layers=[0, 1], keep_ratios=[0.25, 0.5])
    with pytest.raises(ConfigError, match="pruners.layers"):
        PrunerConfig(layers=[1, 0], keep_ratios=[0.5, 0.5])
    with pytest.raises(ConfigError, match="pruners.hidden_dim"):
        PrunerConfig(hidden_dim=30, num_heads=4)


def test_question_aware_heads_read_the_text_and_learned_queries_do_not():
    torch.manual_seed(0)
    vision, text, other = torch.randn(1, 5, 16), torch.randn(1, 3, 16), torch.randn(1, 3, 16)
    valid = torch.ones(1, 3, dtype=torch.bool)
    for queries, reads_text in (("text", True), ("learned", False)):
        head = PrunerHead(16, PrunerConfig(hidden_dim=8, num_heads=2, queries=queries)).eval()
        a, b = head(vision, text, valid), head(vision, other, valid)
        assert a.shape == (1, 5) and (not torch.allclose(a, b)) == reads_text


def test_top_k_keeps_the_largest_candidates_per_row():
    logits = torch.tensor([[5.0, 1.0, 3.0, 9.0, 2.0], [0.0, 4.0, 1.0, 2.0, 3.0]])
    candidates = torch.tensor([[True, True, True, False, True], [True] * 5])
    keep = top_k_keep(logits, candidates, [2, 1])
    assert keep.tolist() == [[True, False, True, False, False], [False, True, False, False, False]]
    assert keep_counts([[64, 64], [10]], 0.25) == [32, 3]


def test_without_pruning_the_wrapper_is_the_models_own_forward(vqa, enc):
    plm = PrunedLM(vqa.model, _pruners(vqa, [1], [1.0]))
    hidden, last = prompt_state(vqa.model, enc)
    state = plm.prefill(enc, hard=True)
    torch.testing.assert_close(state.last_logits[0], last, atol=1e-5, rtol=1e-5)
    soft = plm.soft_forward(enc)
    torch.testing.assert_close(soft.logits[0, -1].detach().float(), last, atol=1e-5, rtol=1e-5)
    replies = [vqa.reply_ids(o) for o in OPTIONS]
    for ours, theirs in zip(plm.reply_logprobs(enc, replies, vqa.pad_id), reply_token_logprobs(vqa.model, enc,
                                                                                                replies, vqa.pad_id)):
        torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)
    assert state.lengths == [enc["input_ids"].shape[1]] * len(state.lengths)


@pytest.mark.parametrize("position_slots", [0, 64])
def test_hard_pruning_equals_the_soft_mask_with_a_shorter_sequence_and_cache(vqa, enc, position_slots):
    n_vision = int((enc["input_ids"] == vqa.image_token_id).sum())
    plm = PrunedLM(vqa.model, _pruners(vqa, [0, 1], [0.5, 0.25], position_slots=position_slots))
    hard, soft = plm.prefill(enc, hard=True), plm.prefill(enc, hard=False)
    torch.testing.assert_close(hard.last_logits, soft.last_logits, atol=1e-4, rtol=1e-4)
    p = enc["input_ids"].shape[1]
    kept = keep_counts([[n_vision // 2] * 2], 0.5)[0], keep_counts([[n_vision // 2] * 2], 0.25)[0]
    assert hard.vision_read == list(kept) == soft.vision_read
    assert hard.lengths == [p - (n_vision - kept[0]), p - (n_vision - kept[1])] and soft.lengths == [p, p]
    assert [hard.cache.get_seq_length(i) for i in range(2)] == hard.lengths  # the KV cache itself is shorter
    # the heads' choice is not a fixed pattern: another initialisation keeps other tokens, other logits
    other = PrunedLM(vqa.model, _pruners(vqa, [0, 1], [0.5, 0.25], seed=1)).prefill(enc, hard=True)
    assert not torch.allclose(other.last_logits, hard.last_logits, atol=1e-4)


def test_an_explicit_mask_prunes_the_same_in_both_modes(vqa, enc):
    vision = enc["input_ids"] == vqa.image_token_id
    mask = vision & (torch.rand(vision.shape, generator=torch.Generator().manual_seed(3)) < 0.3)
    plm = PrunedLM(vqa.model, _pruners(vqa, [1], [1.0]))
    hard, soft = plm.prefill(enc, hard=True, masks={1: mask}), plm.prefill(enc, hard=False, masks={1: mask})
    torch.testing.assert_close(hard.last_logits, soft.last_logits, atol=1e-4, rtol=1e-4)
    assert hard.vision_read[1] == int(mask.sum()) < int(vision.sum())
    _, full = prompt_state(vqa.model, enc)
    assert not torch.allclose(hard.last_logits[0], full, atol=1e-4)  # the mask did change the answer's logits


def test_scoring_and_generation_on_the_pruned_cache_equal_the_soft_mask(vqa, enc):
    plm = PrunedLM(vqa.model, _pruners(vqa, [0, 1], [0.5, 0.25]))
    replies = [vqa.reply_ids(o) for o in OPTIONS]
    for h, s in zip(plm.reply_logprobs(enc, replies, vqa.pad_id, hard=True),
                    plm.reply_logprobs(enc, replies, vqa.pad_id, hard=False)):
        torch.testing.assert_close(h, s, atol=1e-4, rtol=1e-4)
    stops = vqa.chat.stop_ids
    hard = plm.generate(enc, 12, stops, hard=True)
    assert hard == plm.generate(enc, 12, stops, hard=False) and len(hard) >= 2


def test_soft_training_forward_sends_gradient_to_every_head(vqa, enc):
    pruners = _pruners(vqa, [0, 1], [0.5, 0.25]).train()
    out = PrunedLM(vqa.model, pruners).soft_forward(enc, training=True)
    out.logits[0, -1].logsumexp(-1).backward()
    for layer in (0, 1):
        grads = [p.grad for p in pruners.head(layer).mask_predictor.parameters()]
        assert all(g is not None for g in grads) and any(float(g.abs().sum()) > 0 for g in grads)
    assert out.keep[1].sum() < out.keep[0].sum() < (enc["input_ids"] == vqa.image_token_id).sum()


def test_three_optimizers_each_step_their_own_parameters(tmp_path):
    torch.manual_seed(0)
    parts = torch.nn.ModuleDict({name: torch.nn.Linear(3, 1) for name in ("merger", "pruners", "discriminator")})
    frozen = torch.nn.Linear(3, 1).requires_grad_(False)
    model = torch.nn.ModuleDict({"parts": parts, "frozen": frozen})
    x = torch.randn(16, 3)

    def loss_fn(m, batch):
        out = {name: (m["parts"][name](batch) + m["frozen"](batch)).pow(2).mean() for name in ("merger", "pruners")}
        out["discriminator"] = (m["parts"]["discriminator"](batch) - m["parts"]["pruners"](batch)).pow(2).mean()
        out["total"] = sum(out.values())
        return out

    before = {k: v.clone() for k, v in model.state_dict().items()}
    # the discriminator's loss also reaches the pruners' parameters: only its own may move by it
    groups = [OptimGroup(name, list(parts[name].parameters()), name, lr) for name, lr in
              (("merger", 0.1), ("pruners", 0.1), ("discriminator", 0.1))]
    cfg = TrainConfig(out_dir=str(tmp_path), max_steps=2, warmup_steps=0, min_lr_ratio=1.0)
    train(model, lambda epoch: iter([x]), loss_fn, cfg, groups=groups)
    moved = {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    assert moved == {f"parts.{n}.{w}" for n in ("merger", "pruners", "discriminator") for w in ("weight", "bias")}
    # the pruners' step followed their own loss only: redo it by hand with the discriminator's loss left out
    torch.manual_seed(0)
    ref = torch.nn.Linear(3, 1)
    ref.load_state_dict({k.split(".", 2)[2]: v for k, v in before.items() if k.startswith("parts.pruners.")})
    opt = torch.optim.AdamW(ref.parameters(), lr=0.1, betas=(0.9, 0.95), weight_decay=0.0)
    for _ in range(2):
        opt.zero_grad()
        loss = (ref(x) + frozen(x)).pow(2).mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(ref.parameters(), 1.0)
        opt.step()
    torch.testing.assert_close(parts["pruners"].weight, ref.weight)


def test_groups_must_not_share_parameters(tmp_path):
    lin = torch.nn.Linear(2, 1)
    with pytest.raises(ValueError, match="shared"):
        train(lin, lambda e: iter([torch.zeros(1, 2)]), lambda m, b: {"a": m(b).sum(), "total": m(b).sum()},
              TrainConfig(out_dir=str(tmp_path), max_steps=1), groups=[OptimGroup("a", [lin.weight], "a"),
                                                                         OptimGroup("b", [lin.weight], "a")])


def _recipe_overrides(tmp_path, vqa_dir):
    return [f"pruner_train.vqa_path={vqa_dir}", f"train.out_dir={tmp_path / 'run'}",
            f"pruner_train.export_dir={tmp_path / 'export'}", "train.max_steps=3", "train.batch_size=2",
            "train.log_every=1", "synth.n=2", "pruner_train.data.workers=1", "pruner_train.data.cache_dir=",
            "pruner_train.data.probe_objects=1", "train.threads=0"]


def test_the_recipe_trains_three_steps_and_exports_loadable_heads(tmp_path, vqa):
    from seal.config import load
    from training.loop import seed_everything
    from training.pruner_config import TrainPrunersConfig
    from training.pruner_recipe import run

    vqa_dir = cached_tiny_vlm("llava")
    cfg = load(["configs/train/pruners/tiny.yaml"], _recipe_overrides(tmp_path, vqa_dir), cls=TrainPrunersConfig)
    summary = run(cfg, ["test"], log=lambda msg: None)
    assert summary["steps"] == 3 and {"pruners", "discriminator", "task", "adv"} <= set(summary["final"])
    log = [json.loads(line) for line in (tmp_path / "export" / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3]
    pruners = LayerPruners.load(tmp_path / "export")
    recipe = json.loads((tmp_path / "export" / "recipe.json").read_text())
    assert recipe["trained_against"]["vqa"]["path"] == str(vqa_dir)
    seed_everything(cfg.seed)
    init = LayerPruners(cfg.pruners, vqa.hidden_size)
    assert any(not torch.equal(a, b) for a, b in zip(init.state_dict().values(), pruners.state_dict().values()))
    state = PrunedLM(vqa.model, pruners).prefill(vqa.encode(QUESTION, vqa.memory(scene(), None)))
    assert state.vision_read[1] == keep_counts([[state.vision_read[0]]], 0.5)[0] < state.vision_read[0]


def test_seal_train_pruners_cli(tmp_path):
    from seal.cli.main import main

    vqa_dir = cached_tiny_vlm("llava")
    args = ["train", "pruners", "--recipe", "tiny"] + [f"--{o}" for o in _recipe_overrides(tmp_path, vqa_dir)]
    assert main(args) == 0
    assert (tmp_path / "export" / "pruners.safetensors").is_file()
    LayerPruners.load(tmp_path / "export")


def test_with_a_merger_three_optimizers_train_the_merger_pruners_and_discriminator(tmp_path, vqa):
    from seal.vqa.examples import build_training_example, collate
    from seal.vqa.merged_forward import tower_features
    from seal.vqa.merger import MergerConfig, TokenMerger
    from training.pruner_config import PrunerTrainConfig
    from training.pruner_recipe import PrunerTrainModel, make_loss_fn

    size = int(vqa.model.config.vision_config.image_size)
    with torch.no_grad():
        vision_dim = int(tower_features(vqa.model, torch.zeros(1, 3, size, size)).shape[-1])
    torch.manual_seed(0)
    merger = TokenMerger(MergerConfig(vision_dim=vision_dim, text_dim=vqa.hidden_size)).train()
    vwm = VisualWorkingMemory(global_image=scene(), config=vqa.vwm_config)
    vwm.add_target("striped star", (10.0, 10.0, 40.0, 40.0), 1.0)
    batch = collate([build_training_example(vqa.processor, QUESTION, OPTIONS[i], vwm) for i in (0, 1)], vqa.pad_id)
    pt = PrunerTrainConfig(vqa_path="unused", merger_ratio=0.5)
    model = PrunerTrainModel(vqa.model, _pruners(vqa, [1], [0.5]).train(), pt, merger)
    groups = model.groups(pt)
    assert [g.name for g in groups] == ["merger", "pruners", "discriminator"]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    try:
        summary = train(model, lambda epoch: iter([batch]), make_loss_fn(pt),
                        TrainConfig(out_dir=str(tmp_path), max_steps=2, warmup_steps=0), groups=groups)
    finally:
        vqa.model.eval()
    moved = {k.split(".")[0] for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    assert moved == {"merger", "pruners", "discriminator"}  # the VQA model stays frozen
    assert {"merger", "sparsity", "pruners", "discriminator"} <= set(summary["final"])


def test_the_benchs_stride_mask_keeps_the_proxys_tokens_in_each_image_block():
    from eval.bench_pruners import stride_mask

    vision = torch.zeros(1, 17, dtype=torch.bool)
    vision[0, 4:12] = vision[0, 13:17] = True  # two images: 8 and 4 tokens
    assert torch.nonzero(stride_mask(vision, 0.5)[0]).flatten().tolist() == [4, 6, 8, 10, 13, 15]


def test_block_slots_count_each_images_positions_from_zero():
    from seal.vqa.pruned_forward import block_slots

    vision = torch.zeros(1, 9, dtype=torch.bool)
    vision[0, 1:4] = vision[0, 5:8] = True
    assert block_slots(vision).tolist() == [[0, 0, 1, 2, 0, 0, 1, 2, 0]]


def test_the_sigmoid_training_mask_gives_every_vision_token_gradient(vqa, enc):
    vision = (enc["input_ids"] == vqa.image_token_id)[0]
    grads, kept = {}, {}
    for mode in ("straight_through", "sigmoid"):
        torch.manual_seed(0)
        cfg = PrunerConfig(layers=[1], keep_ratios=[0.25], train_mask=mode, gumbel_scale=0.0)
        pruners = LayerPruners(cfg, vqa.hidden_size).train()
        out = PrunedLM(vqa.model, pruners).soft_forward(enc, training=True)
        out.keep_logits[1].retain_grad()
        out.logits[0, -1].logsumexp(-1).backward()
        grads[mode], kept[mode] = out.keep_logits[1].grad[0].abs(), out.keep[1][0]
    st, dropped = grads["straight_through"], vision & ~kept["straight_through"]
    assert float(st[dropped].max()) < 1e-6 < float(st[kept["straight_through"]].max())
    assert bool((grads["sigmoid"][vision] > 0).all()) and bool(kept["sigmoid"][vision].all())  # none dropped
