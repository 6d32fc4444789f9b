import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import numpy as np

from training.config import TrainConfig
from training.loop import lr_lambda, seed_everything, train

ROOT = Path(__file__).resolve().parents[1]


def _problem():
    torch.manual_seed(0)
    x = torch.randn(128, 3)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5]])

    def batches(epoch):
        for i in range(0, 128, 16):
            yield x[i:i + 16], y[i:i + 16]

    def loss_fn(m, batch):
        return {"total": torch.nn.functional.mse_loss(m(batch[0]), batch[1])}

    return batches, loss_fn


def test_loss_goes_down_and_log_written(tmp_path):
    batches, loss_fn = _problem()
    model = torch.nn.Linear(3, 1)
    x0, y0 = next(iter(batches(0)))
    before = loss_fn(model, (x0, y0))["total"].item()
    summary = train(model, batches, loss_fn, TrainConfig(out_dir=str(tmp_path), max_steps=60, lr=0.05,
                                                         warmup_steps=0, log_every=10, save_every=30))
    assert summary["steps"] == 60
    assert summary["final"]["total"] < before * 0.1
    log = [json.loads(line) for line in (tmp_path / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [10, 20, 30, 40, 50, 60]


def test_resume_continues_from_checkpoint(tmp_path):
    batches, loss_fn = _problem()
    cfg = TrainConfig(out_dir=str(tmp_path), max_steps=20, lr=0.3, warmup_steps=0, log_every=10, save_every=10,
                      min_lr_ratio=1.0)
    first = train(torch.nn.Linear(3, 1), batches, loss_fn, cfg)
    cfg2 = TrainConfig(out_dir=str(tmp_path), max_steps=30, lr=0.3, warmup_steps=0, log_every=10, save_every=10,
                       min_lr_ratio=1.0)
    fresh = torch.nn.Linear(3, 1)
    summary = train(fresh, batches, loss_fn, cfg2)
    assert summary["steps"] == 30
    steps = [json.loads(line)["step"] for line in (tmp_path / "train_log.jsonl").read_text().splitlines()]
    assert steps == [10, 20, 30]  # resumed at 20: did not redo steps 1..20
    # a fresh Linear would start near the initial loss (~5); the resumed one continues from step 20
    assert summary["final"]["total"] <= first["final"]["total"] * 1.5 < 1.0


def test_resuming_a_checkpoint_of_another_model_is_a_clear_error(tmp_path):
    from seal.core.errors import InputError

    batches, loss_fn = _problem()
    cfg = TrainConfig(out_dir=str(tmp_path), max_steps=10, warmup_steps=0, save_every=10)
    train(torch.nn.Linear(3, 1), batches, loss_fn, cfg)
    bigger = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 1))
    with pytest.raises(InputError, match="does not fit this model.*new train.out_dir"):
        train(bigger, batches, loss_fn, TrainConfig(out_dir=str(tmp_path), max_steps=20, warmup_steps=0))


def test_grad_accumulation_counts_optimizer_steps(tmp_path):
    batches, loss_fn = _problem()
    seen = []

    def counting_loss(m, batch):
        seen.append(1)
        return loss_fn(m, batch)

    train(torch.nn.Linear(3, 1), batches, counting_loss,
          TrainConfig(out_dir=str(tmp_path), max_steps=5, grad_accum_steps=3, warmup_steps=0))
    assert len(seen) == 15


class _Noisy(torch.nn.Module):
    """A tiny model whose training draws from the RNG: dropout in the model, noise in the loss (as the
    policy head's Gumbel noise)."""

    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Dropout(0.3), torch.nn.Linear(8, 1))

    def forward(self, x):
        return self.net(x)


def _shuffled_problem():
    torch.manual_seed(0)
    x = torch.randn(40, 3)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5]])

    def epochs(epoch):  # 4 batches an epoch, reshuffled per epoch: 6 steps cross epoch boundaries
        order = np.random.default_rng([7, epoch]).permutation(40)
        for i in range(0, 40, 10):
            yield order[i:i + 10]

    def loss_fn(m, batch):
        pred = m(batch[0])
        return {"total": torch.nn.functional.mse_loss(pred + 0.1 * torch.randn_like(pred), batch[1])}

    return epochs, (lambda idx: (x[idx], y[idx])), loss_fn


class _Interrupted(Exception):
    pass


def test_an_interrupted_run_resumed_ends_with_the_weights_of_an_uninterrupted_one(tmp_path):
    """Exact resume: 6 steps in one run == 3 steps, a crash, then a fresh process resuming for 3 more;
    every tensor equal bit for bit (data order, optimizer, schedule and RNG all continue)."""
    epochs, collate, loss_fn = _shuffled_problem()

    def cfg(out):
        return TrainConfig(out_dir=str(out), max_steps=6, lr=0.05, warmup_steps=2, min_lr_ratio=0.1, save_every=3,
                           log_every=1)

    seed_everything(0)
    whole = _Noisy()
    train(whole, epochs, loss_fn, cfg(tmp_path / "whole"), collate)

    calls = []

    def crashing(m, batch):
        if len(calls) == 3:
            raise _Interrupted
        calls.append(1)
        return loss_fn(m, batch)

    seed_everything(0)
    with pytest.raises(_Interrupted):
        train(_Noisy(), epochs, crashing, cfg(tmp_path / "split"), collate)
    seed_everything(123)  # a new process: other RNG state, other initial weights
    resumed = _Noisy()
    summary = train(resumed, epochs, loss_fn, cfg(tmp_path / "split"), collate)

    assert summary["steps"] == 6
    a, b = whole.state_dict(), resumed.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    logs = [[json.loads(line) for line in (tmp_path / run / "train_log.jsonl").read_text().splitlines()]
            for run in ("whole", "split")]
    assert [r["step"] for r in logs[1]] == [1, 2, 3, 4, 5, 6]
    assert [r["total"] for r in logs[0]] == [r["total"] for r in logs[1]]


def test_schedule_shape():
    f = lr_lambda(TrainConfig(max_steps=100, warmup_steps=10, min_lr_ratio=0.1))
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0)
    assert f(100) == pytest.approx(0.1) and 0.1 < f(50) < 1.0


@pytest.mark.slow
def test_two_process_accelerate_smoke(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    accelerate = Path(sys.executable).with_name("accelerate")
    cmd = [str(accelerate), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",  # gloo on CPU
           "--mixed_precision", "no", "--dynamo_backend", "no",
           str(ROOT / "tests" / "accel_toy_script.py"), str(tmp_path)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads((tmp_path / "train_summary.json").read_text())
    assert summary["processes"] == 2 and summary["steps"] == 40
    assert summary["final"]["total"] < 0.05


def test_bf16_mixed_precision_autocasts_the_whole_step_and_trains(tmp_path):
    batches, loss_fn = _problem()
    dtypes = set()

    def bf16_loss(m, batch):
        pred = m(batch[0])
        dtypes.add(pred.dtype)
        return {"total": torch.nn.functional.mse_loss(pred.float(), batch[1])}

    model = torch.nn.Linear(3, 1)
    x0, y0 = next(iter(batches(0)))
    before = loss_fn(model, (x0, y0))["total"].item()
    summary = train(model, batches, bf16_loss, TrainConfig(out_dir=str(tmp_path / "bf16"), max_steps=60, lr=0.05,
                                                           warmup_steps=0, log_every=60, mixed_precision="bf16"))
    assert dtypes == {torch.bfloat16} and model.weight.dtype == torch.float32  # autocast; fp32 master weights
    assert summary["final"]["total"] < before * 0.1
    # a later loop of the same command at another precision (as the crop matcher after the search model)
    dtypes.clear()
    train(torch.nn.Linear(3, 1), batches, bf16_loss, TrainConfig(out_dir=str(tmp_path / "fp32"), max_steps=2))
    assert dtypes == {torch.float32}


def test_mixed_precision_is_the_configs_and_checked(tmp_path, monkeypatch):
    import yaml

    from seal.core.config import from_dict
    from seal.core.errors import ConfigError

    assert from_dict(TrainConfig, yaml.safe_load("mixed_precision: no")).mixed_precision == "no"  # YAML 1.1's false
    assert from_dict(TrainConfig, yaml.safe_load("mixed_precision: bf16")).mixed_precision == "bf16"
    with pytest.raises(ConfigError, match="train.mixed_precision"):
        TrainConfig(mixed_precision="fp8")
    batches, loss_fn = _problem()
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "bf16")  # accelerate launch --mixed_precision bf16
    with pytest.raises(ConfigError, match=r"train.mixed_precision: 'no', but accelerate launch set 'bf16'"):
        train(torch.nn.Linear(3, 1), batches, loss_fn, TrainConfig(out_dir=str(tmp_path), max_steps=1))
    if not torch.cuda.is_available():
        monkeypatch.delenv("ACCELERATE_MIXED_PRECISION")
        with pytest.raises(ConfigError, match="fp16 needs a GPU"):
            train(torch.nn.Linear(3, 1), batches, loss_fn,
                  TrainConfig(out_dir=str(tmp_path), max_steps=1, mixed_precision="fp16"))


def test_batches_move_to_the_device_through_dicts_lists_and_dataclasses():
    from dataclasses import dataclass

    from training.distributed import jsonable, to_device

    @dataclass
    class Targets:
        boxes: list
        valid: torch.Tensor
        name: str

    batch = {"x": torch.zeros(2, 3), "targets": Targets([torch.ones(1, 4), torch.ones(0, 4)], torch.ones(2), "a"),
             "pair": (torch.zeros(1), 3)}
    moved = to_device(batch, torch.device("meta"))
    assert moved["x"].is_meta and moved["targets"].valid.is_meta and all(b.is_meta for b in moved["targets"].boxes)
    assert moved["targets"].name == "a" and moved["pair"][1] == 3 and moved["pair"][0].is_meta
    assert batch["x"].device.type == "cpu"  # the batch itself is left as it was
    assert jsonable((np.array([3, 1]), torch.tensor([True]))) == [[3, 1], [True]]


def test_activation_checkpointing_keeps_fewer_activations_for_the_same_step(tmp_path):
    """train.activation_checkpointing on a real transformers model: the same losses, a smaller peak."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from seal.core.errors import ConfigError
    from training.memory import measure_step_peak

    def run(name, checkpointing):
        torch.manual_seed(0)
        model = LlamaForCausalLM(LlamaConfig(num_hidden_layers=4, hidden_size=64, intermediate_size=128, vocab_size=50,
                                             num_attention_heads=2, num_key_value_heads=2, use_cache=False))
        ids = torch.randint(50, (2, 256), generator=torch.Generator().manual_seed(1))

        def loss_fn(m, batch):
            return {"total": m(input_ids=batch, labels=batch).loss}

        cfg = TrainConfig(out_dir=str(tmp_path / name), max_steps=2, lr=0.01, warmup_steps=0, log_every=1,
                          activation_checkpointing=checkpointing)
        peak, _ = measure_step_peak(lambda: train(model, lambda epoch: [ids], loss_fn, cfg),
                                    list(model.parameters()) + list(model.buffers()))
        return [json.loads(line)["total"] for line in (tmp_path / name / "train_log.jsonl").read_text().splitlines()], \
            peak

    (plain, peak_plain), (ckpt, peak_ckpt) = run("plain", False), run("ckpt", True)
    assert plain == pytest.approx(ckpt, rel=1e-5) and len(plain) == 2
    assert peak_ckpt < 0.6 * peak_plain, (peak_ckpt, peak_plain)
    with pytest.raises(ConfigError, match="train.activation_checkpointing"):
        train(torch.nn.Linear(3, 1), *_problem(), TrainConfig(out_dir=str(tmp_path / "lin"), max_steps=1,
                                                              activation_checkpointing=True))


def test_the_export_of_a_sharded_run_is_the_gathered_state_in_a_copy_of_the_model():
    """gather_for_export (what the loop gives on_save under FSDP / ZeRO-3), on a prepared StepModule:
    the trained weights land in the copy made before preparing, strictly (on the one process here)."""
    import copy

    from training.distributed import StepModule, gather_for_export, make_accelerator, weights_sharded

    accelerator = make_accelerator(TrainConfig())
    assert not weights_sharded(accelerator)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 1))
    template = copy.deepcopy(model)
    prepared = accelerator.prepare(StepModule(model, lambda m, b: {"total": m(b).sum()}))
    with torch.no_grad():
        model[0].weight.add_(1.0)  # "training"
    exported = gather_for_export(accelerator, prepared, template)
    assert exported is template and torch.equal(template[0].weight, model[0].weight)
    assert gather_for_export(accelerator, prepared, None) is None  # the other processes


def test_a_checkpoint_of_the_bare_model_written_before_the_step_module_resumes(tmp_path):
    """Checkpoints written before the loop prepared a StepModule hold the model's own keys: they resume."""
    from training.distributed import make_accelerator

    batches, loss_fn = _problem()
    cfg = TrainConfig(out_dir=str(tmp_path), max_steps=3, warmup_steps=0, log_every=1)
    old = torch.nn.Linear(3, 1)
    with torch.no_grad():
        old.weight.fill_(0.5)
    accelerator = make_accelerator(cfg)
    optimizer = torch.optim.AdamW(old.parameters(), lr=cfg.lr)
    parts = accelerator.prepare(old, optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0))
    accelerator.save_state(str(tmp_path / "checkpoint"))
    (tmp_path / "checkpoint" / "state.json").write_text(json.dumps({"step": 2}))  # the old state.json: step only
    assert parts[0] is old
    resumed = torch.nn.Linear(3, 1)
    first_batch = []
    train(resumed, batches, lambda m, b: first_batch.append(b[0][0, 0].item()) or loss_fn(m, b), cfg)
    assert [json.loads(line)["step"] for line in (tmp_path / "train_log.jsonl").read_text().splitlines()] == [3]
    assert first_batch == [next(itertools.islice(batches(0), 2, None))[0][0, 0].item()]  # keys 0-1 skipped
    assert resumed.weight.flatten()[0].item() == pytest.approx(0.5, abs=0.01)  # the old weights, one step on
