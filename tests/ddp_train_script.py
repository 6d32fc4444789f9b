"""Run by tests/test_train_ddp.py, as one process or under ``accelerate launch``: the real training loop on
a toy regression whose loss calls a model method besides ``forward`` (as the VSM's ``encode_images``).

``python tests/ddp_train_script.py OUT_DIR BATCH_SIZE MAX_STEPS GRAD_ACCUM``: writes the loop's log,
checkpoint and per-rank key logs into OUT_DIR, the trained weights to ``OUT_DIR/weights.pt`` and one
line per ``on_save`` call (the rank that made it) to ``OUT_DIR/saved_by.txt``.
"""

import sys
from pathlib import Path

import numpy as np
import torch

from training.config import TrainConfig
from training.distributed import process_index
from training.loop import seed_everything, train

N = 96


class Toy(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.encoder = torch.nn.Linear(4, 8)
        self.head = torch.nn.Linear(8, 1)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 4) -> (B, 8) features: a method other than forward, with trained weights."""
        return torch.tanh(self.encoder(x))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(features)  # (B, 1)


def main(out_dir: str, batch_size: int, max_steps: int, grad_accum: int) -> None:
    data = torch.Generator().manual_seed(0)
    x = torch.randn(N, 4, generator=data)
    y = torch.sin(x @ torch.tensor([[1.0], [-2.0], [0.5], [1.5]]))

    def epochs(epoch: int):
        order = np.random.default_rng([3, epoch]).permutation(N)
        for start in range(0, N - batch_size + 1, batch_size):
            yield [int(i) for i in order[start:start + batch_size]]

    def loss_fn(model: Toy, idx: list[int]) -> dict:
        pred = model(model.encode(x[idx]))
        return {"total": torch.nn.functional.mse_loss(pred, y[idx]), "n": float(len(idx))}

    def on_save(model: Toy, out: Path) -> None:
        torch.save(model.state_dict(), out / "weights.pt")
        with (out / "saved_by.txt").open("a") as f:
            f.write(f"{process_index()}\n")

    torch.manual_seed(1)
    model = Toy()  # the same initial weights in every process
    seed_everything(0)
    cfg = TrainConfig(out_dir=out_dir, max_steps=max_steps, batch_size=batch_size, grad_accum_steps=grad_accum,
                      lr=0.05, warmup_steps=0, min_lr_ratio=1.0, log_every=1, save_every=2, log_keys=True)
    train(model, epochs, loss_fn, cfg, on_save=on_save)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))
