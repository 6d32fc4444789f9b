"""``ValuePolicy``: decide NO / COARSE / FULL vision for a question from its text-only pass.

    text pass -> PolicyInputs -> chooser (the learned VoWHead, argmax; or a fixed baseline)
              -> fallback (NO_VISION may escalate when the text pass is unsure) -> Decision
    (the agent, after a learned COARSE decision: the coarse answer may escalate to FULL,
     :mod:`seal.policy.escalation`)

Every decision says why (``reason``), e.g.
``"p(full)=0.91 > p(no)=0.06, p(coarse)=0.03; entropy 2.300, margin 0.050"`` and, when the fallback
changed it, ``"...; fallback: entropy 2.300 > 1.500 -> full"``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from seal.core.errors import ConfigError, InputError
from seal.policy.actions import ALL_ACTIONS, N_ACTIONS, Action
from seal.policy.baselines import Chooser, Choices, make_baseline
from seal.policy.config import PolicyConfig
from seal.policy.data import FEATURE_MODE, HIDDEN_SOURCE
from seal.policy.escalation import Escalation
from seal.policy.fallback import Fallback
from seal.policy.features import PolicyInputs, TextPass, feature_dim

if TYPE_CHECKING:
    from seal.policy.head import VoWHead


@dataclass
class Decision:
    """One question's decision.

    Attributes:
        action: the action to run (after the fallback).
        chosen_action: the chooser's action before the fallback.
        probs: the chooser's distribution over (NO, COARSE, FULL), sums to 1.
        reason: human-readable explanation of the decision (and of the fallback, if it fired).
        fallback_fired: the fallback escalated a NO_VISION decision.
        features: (F,) float32 policy features the decision was made from.
        entropy: text-pass next-token entropy (nats); margin: top-1 minus top-2 probability.
    """

    action: Action
    chosen_action: Action
    probs: tuple[float, float, float]
    reason: str
    fallback_fired: bool
    features: np.ndarray
    entropy: float
    margin: float

    def to_json(self) -> dict:
        """JSON-ready summary for traces (features left out)."""
        return {"action": self.action.short, "chosen_action": self.chosen_action.short,
                "probs": {a.short: round(p, 6) for a, p in zip(ALL_ACTIONS, self.probs)},
                "reason": self.reason, "fallback_fired": self.fallback_fired,
                "entropy": self.entropy, "margin": self.margin}


class LearnedChooser:
    """The trained head behind the :class:`~seal.policy.baselines.Chooser` interface: argmax action."""

    name = "learned"

    def __init__(self, head: "VoWHead") -> None:
        self.head = head.eval()

    def choose(self, inputs: PolicyInputs) -> Choices:
        import torch

        with torch.no_grad():
            p_space = self.head.action_probs(torch.from_numpy(inputs.features)).double().numpy()  # (N, A)
        cols = [int(a) for a in self.head.actions]
        probs = np.zeros((len(inputs), N_ACTIONS))
        probs[:, cols] = p_space
        actions = np.asarray(cols, dtype=np.int64)[p_space.argmax(axis=1)]
        reasons = [_explain(probs[i], int(actions[i]), cols) for i in range(len(inputs))]
        return Choices(actions, probs, reasons)


class ValuePolicy:
    """A chooser (learned or fixed) plus the fallback rule and, for the learned head, the COARSE ->
    FULL escalation (:attr:`escalation`, applied by the agent once the coarse view has answered)."""

    def __init__(self, cfg: PolicyConfig, chooser: Chooser) -> None:
        self.cfg = cfg
        self.chooser = chooser
        self.fallback = Fallback.from_config(cfg)
        learned = isinstance(chooser, LearnedChooser)
        self.escalation = Escalation.from_config(cfg, chooser.head.spec.action_space) if learned else None

    @classmethod
    def from_config(cls, cfg: PolicyConfig, head: "VoWHead | None" = None, seed: int = 0) -> "ValuePolicy":
        """The baseline ``cfg.baseline_name`` (``seed``: the run's, for a random one); or the learned
        policy with ``head`` (else loaded strictly from ``cfg.checkpoint``), whose own spec says which
        features and actions it has."""
        if cfg.baseline_name is not None:
            return cls(cfg, make_baseline(cfg.baseline_name, cfg, seed))
        if head is None:
            if cfg.checkpoint is None:
                raise ConfigError("policy.checkpoint: the learned policy (baseline_name: null) needs a trained "
                                  "head directory; set policy.checkpoint or choose a baseline_name")
            from seal.policy.head import VoWHead

            head = VoWHead.load(cfg.checkpoint)
        if head.spec.action_space == "binary" and cfg.fallback_mode != "none" and cfg.fallback_action == "coarse":
            raise ConfigError(f"policy.fallback_action: coarse, but the head at {cfg.checkpoint or '<given head>'} "
                              "decides between no and full vision (action space binary)")
        return cls(cfg, LearnedChooser(head))

    def check_model(self, vqa: Any) -> None:
        """Raise unless the learned head can read the text pass of ``vqa`` (a VQA model with ``path``
        and ``hidden_size``, :class:`seal.vqa.model.VQAModel`): it must have been trained
        against this VQA model (its manifest's ``trained_against.vqa``) and its input width must be
        the model's hidden size plus the uncertainty features. Baselines read no hidden state.

        Raises:
            InputError: one line naming the head and the model, and how to train a head for it.
        """
        if not isinstance(self.chooser, LearnedChooser):
            return
        where = self.cfg.checkpoint or "the given head"
        fix = (f"train a head for it with `seal train policy --vqa {vqa.path}` (then --policy.checkpoint="
               "runs/policy/<its folder name>/head), or choose a baseline with --policy.baseline_name=NAME")
        if self.cfg.checkpoint is not None and vqa.path is not None:
            from seal.core.manifest import check_trained_against, read_manifest

            check_trained_against(read_manifest(self.cfg.checkpoint, "policy_head"), "vqa", vqa.path, fix)
        need = feature_dim(vqa.hidden_size, self.chooser.head.spec.feature_mode)
        if need != self.chooser.head.spec.in_features:
            raise InputError(f"{where}: the policy head reads {self.chooser.head.spec.in_features} features, but the "
                             f"VQA model {vqa.path or ''} gives {need} (hidden size {vqa.hidden_size}); {fix}")

    @property
    def name(self) -> str:
        return self.chooser.name

    def inputs(self, text_pass: TextPass) -> PolicyInputs:
        """The batch-of-one policy inputs of a text pass: the learned head's features (its spec's
        ``feature_mode`` / ``hidden_source``); under a baseline, the features policy data records
        (:data:`seal.policy.data.FEATURE_MODE` of the :data:`~seal.policy.data.HIDDEN_SOURCE` state)."""
        if isinstance(self.chooser, LearnedChooser):
            mode, source = self.chooser.head.spec.feature_mode, self.chooser.head.spec.hidden_source
        else:
            mode, source = FEATURE_MODE, HIDDEN_SOURCE
        return PolicyInputs.from_text_pass(text_pass, mode, source)

    def decide(self, text_pass: TextPass) -> Decision:
        """Decide for one question from its text-only pass."""
        return self.decide_batch(self.inputs(text_pass))[0]

    def decide_batch(self, inputs: PolicyInputs) -> list[Decision]:
        """Decide for every row of precomputed ``inputs`` (offline evaluation, sweeps)."""
        choices = self.chooser.choose(inputs)
        final, fired, notes = self.fallback.apply(choices.actions, inputs)
        out = []
        for i in range(len(inputs)):
            reason = f"{choices.reasons[i]}; entropy {inputs.entropy[i]:.3f}, margin {inputs.margin[i]:.3f}"
            if fired[i]:
                reason += f"; {notes[i]}"
            out.append(Decision(action=Action(int(final[i])), chosen_action=Action(int(choices.actions[i])),
                                probs=tuple(float(p) for p in choices.probs[i]), reason=reason,
                                fallback_fired=bool(fired[i]), features=inputs.features[i],
                                entropy=float(inputs.entropy[i]), margin=float(inputs.margin[i])))
        return out


def summarize(decisions: Sequence[Decision]) -> dict:
    """Action ratios (after the fallback) and the fallback trigger rate of a set of decisions."""
    n = len(decisions)
    counts = np.bincount([int(d.action) for d in decisions], minlength=N_ACTIONS) if n else np.zeros(N_ACTIONS)
    out = {f"action_rate_{a.short}": (float(counts[a]) / n if n else 0.0) for a in ALL_ACTIONS}
    out["fallback_trigger_rate"] = sum(d.fallback_fired for d in decisions) / n if n else 0.0
    out["n"] = n
    return out


def _explain(probs: np.ndarray, action: int, cols: list[int]) -> str:
    """``"p(full)=0.91 > p(no)=0.06, p(coarse)=0.03"`` over the head's action space."""
    others = sorted((c for c in cols if c != action), key=lambda c: -probs[c])
    rest = ", ".join(f"p({Action(c).short})={probs[c]:.2f}" for c in others)
    return f"p({Action(action).short})={probs[action]:.2f} > {rest}"
