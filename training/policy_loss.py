"""``PolicyLoss``: the two training objectives of the value-of-vision head, one method per term.

Shapes: B questions in a batch, A actions in the head's action space (2 or 3); every (B, A)
tensor's columns follow the head's :attr:`~seal.policy.head.VoWHead.actions`.

Stage 1 (warm start)::

    total = cross_entropy(logits, target action, label_smoothing=stage1_label_smoothing)

Stage 2 (cost-aware)::

    total = task + lambda_cost * cost + lambda_cal * calibration
    task        = mean_b sum_a w[b, a] * L[b, a]      w = Gumbel-softmax straight-through one-hot
                                                        sample (forward hard, backward soft), or
                                                        the softmax p (soft mixture)
    cost        = mean_b sum_a p[b, a] * c[b, a]       c = measured tokens / normaliser
    calibration = mean_b (p[b, a*] - correct[b, a*])^2, a* = argmax_a p[b, a]

The calibration term is the Brier score of the policy's confidence in its own choice: p(chosen
action) should equal the probability that the chosen action's answer is right, which is what the
ECE of :mod:`seal.policy.calibration` measures on (p(chosen), correct(chosen)).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from training.policy_config import PolicyTrainConfig


class PolicyLoss:
    def __init__(self, cfg: PolicyTrainConfig) -> None:
        self.weights = {"task": 1.0, "cost": cfg.lambda_cost, "calibration": cfg.lambda_cal}
        self.straight_through = cfg.use_straight_through
        self.tau = cfg.gumbel_tau
        self.label_smoothing = cfg.stage1_label_smoothing

    # ---- stage 1 -------------------------------------------------------------------------------
    def imitation(self, logits: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        """Stage 1. logits (B, A); target (B,) int64 column indices. Returns ``{"total", "imitation"}``."""
        ce = F.cross_entropy(logits, target, label_smoothing=self.label_smoothing)
        return {"total": ce, "imitation": ce.detach()}

    # ---- stage 2 -------------------------------------------------------------------------------
    def action_weights(self, logits: torch.Tensor) -> torch.Tensor:
        """(B, A) weights of the task losses: a straight-through one-hot sample or the softmax."""
        if self.straight_through:
            return F.gumbel_softmax(logits, tau=self.tau, hard=True, dim=-1)
        return torch.softmax(logits, dim=-1)

    def task(self, weights: torch.Tensor, task_loss: torch.Tensor) -> torch.Tensor:
        """weights, task_loss (B, A) -> scalar: the task loss of the selected / mixed action."""
        return (weights * task_loss).sum(dim=-1).mean()

    def cost(self, probs: torch.Tensor, costs: torch.Tensor) -> torch.Tensor:
        """probs, costs (B, A) (normalised costs) -> scalar expected cost."""
        return (probs * costs).sum(dim=-1).mean()

    def calibration(self, probs: torch.Tensor, correct: torch.Tensor) -> torch.Tensor:
        """probs (B, A), correct (B, A) 0/1 -> scalar Brier score of p(chosen action)."""
        chosen = probs.detach().argmax(dim=-1, keepdim=True)  # (B, 1)
        confidence = probs.gather(-1, chosen).squeeze(-1)  # (B,)
        hit = correct.float().gather(-1, chosen).squeeze(-1)  # (B,)
        return ((confidence - hit) ** 2).mean()

    def __call__(self, logits: torch.Tensor, task_loss: torch.Tensor, costs: torch.Tensor,
                 correct: torch.Tensor) -> dict[str, torch.Tensor]:
        """Stage 2. All inputs (B, A). Returns ``{"total", "task", "cost", "calibration"}`` (scalars;
        only ``total`` carries gradients)."""
        probs = torch.softmax(logits, dim=-1)
        terms = {
            "task": self.task(self.action_weights(logits), task_loss),
            "cost": self.cost(probs, costs),
            "calibration": self.calibration(probs, correct),
        }
        total = sum(self.weights[k] * v for k, v in terms.items())
        return {"total": total, **{k: v.detach() for k, v in terms.items()}}
