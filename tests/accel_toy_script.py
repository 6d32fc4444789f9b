"""Run by tests/test_training_loop.py under `accelerate launch --num_processes 2 --cpu`."""

import sys

import torch

from training.config import TrainConfig
from training.loop import train


def main(out_dir: str) -> None:
    torch.manual_seed(0)
    w_true = torch.tensor([[2.0], [-3.0]])
    x = torch.randn(256, 2)
    y = x @ w_true
    model = torch.nn.Linear(2, 1)

    def batches(epoch):
        g = torch.Generator().manual_seed(epoch)
        perm = torch.randperm(256, generator=g)
        for i in range(0, 256, 32):
            idx = perm[i:i + 32]
            yield x[idx], y[idx]

    def loss_fn(m, batch):
        xb, yb = batch
        return {"total": torch.nn.functional.mse_loss(m(xb), yb)}

    cfg = TrainConfig(out_dir=out_dir, max_steps=40, batch_size=32, lr=0.3, warmup_steps=0, log_every=5,
                      min_lr_ratio=1.0, save_every=20)
    train(model, batches, loss_fn, cfg)


if __name__ == "__main__":
    main(sys.argv[1])
