"""``VoWHead``: the value-of-vision head, a small MLP from policy features to action logits.

    x (B, F) -> standardise with the training set's mean/std -> Linear(F, H) -> GELU -> Dropout
             -> Linear(H, A) -> logits (B, A)

``A`` = 2 for the binary action space (columns NO_VISION, FULL_VISION) and 3 for the ternary one
(NO, COARSE, FULL); :func:`seal.policy.actions.space_actions` maps columns to actions. A saved head
is a directory with ``head.safetensors`` (weights and the standardisation buffers) and
``head.json`` (architecture, feature mode, action space); loading is strict.
"""

from __future__ import annotations

import json
from dataclasses import MISSING, asdict, dataclass, fields
from pathlib import Path

import torch
from torch import nn

from seal.core.errors import InputError
from seal.policy.actions import Action, space_actions

WEIGHTS_NAME = "head.safetensors"
CONFIG_NAME = "head.json"
FORMAT = "seal.policy.VoWHead/1"


@dataclass(frozen=True)
class HeadSpec:
    """Everything needed to rebuild a head (written to ``head.json``)."""

    in_features: int
    """F: length of the feature vector (LLM hidden size + appended uncertainty signals)."""
    hidden_dim: int
    action_space: str
    """``binary`` or ``ternary``."""
    feature_mode: str
    """The :mod:`seal.policy.features` mode the features were built with."""
    hidden_source: str = "pooled"
    dropout: float = 0.0

    @property
    def actions(self) -> tuple[Action, ...]:
        return space_actions(self.action_space)  # type: ignore[arg-type]


class VoWHead(nn.Module):
    """Policy features -> action logits over the head's action space."""

    def __init__(self, spec: HeadSpec) -> None:
        super().__init__()
        if spec.in_features < 1 or spec.hidden_dim < 1:
            raise ValueError(f"in_features and hidden_dim must be >= 1, found {spec.in_features}, {spec.hidden_dim}")
        self.spec = spec
        self.register_buffer("feature_mean", torch.zeros(spec.in_features))
        self.register_buffer("feature_std", torch.ones(spec.in_features))
        self.mlp = nn.Sequential(
            nn.Linear(spec.in_features, spec.hidden_dim),
            nn.GELU(),
            nn.Dropout(spec.dropout),
            nn.Linear(spec.hidden_dim, len(spec.actions)),
        )

    @property
    def actions(self) -> tuple[Action, ...]:
        """The action behind each output column."""
        return self.spec.actions

    def set_standardization(self, features: torch.Tensor, eps: float = 1e-6) -> None:
        """Fit the input standardisation to ``features`` (N, F): per-feature mean and std."""
        if features.ndim != 2 or features.shape[1] != self.spec.in_features:
            raise ValueError(f"features: expected (N, {self.spec.in_features}), found {tuple(features.shape)}")
        features = features.float()
        self.feature_mean.copy_(features.mean(dim=0))
        self.feature_std.copy_(features.std(dim=0, unbiased=False).clamp_min(eps))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Args: features (B, F) float. Returns: logits (B, A) float32, columns per :attr:`actions`."""
        if features.ndim != 2 or features.shape[1] != self.spec.in_features:
            raise ValueError(f"features: expected (B, {self.spec.in_features}), found {tuple(features.shape)}")
        x = (features.float() - self.feature_mean) / self.feature_std  # (B, F)
        return self.mlp(x)  # (B, A)

    def action_probs(self, features: torch.Tensor) -> torch.Tensor:
        """Softmax of :meth:`forward`, (B, A), rows sum to 1."""
        return torch.softmax(self.forward(features), dim=-1)

    # ---- persistence ---------------------------------------------------------------------------
    def save(self, out_dir: str | Path, trained_against: dict[str, str | Path] | None = None,
             recipe: dict | None = None) -> Path:
        """Write ``head.safetensors``, ``head.json`` and the ``manifest.json`` (kind ``policy_head``)
        into ``out_dir``; returns the directory.

        Args:
            trained_against: ``{"vqa": DIR}``, the VQA model whose text pass the head was trained on
                (its fingerprint is recorded: another model is refused at load).
            recipe: how it was made (command, training settings), recorded in the manifest.
        """
        from safetensors.torch import save_file

        from seal.core.manifest import write_manifest

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        tensors = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        save_file(tensors, str(out / WEIGHTS_NAME), metadata={"format": FORMAT})
        (out / CONFIG_NAME).write_text(json.dumps({"format": FORMAT, **asdict(self.spec)}, indent=2) + "\n",
                                       encoding="utf-8")
        write_manifest(out, "policy_head", {"format": FORMAT, **asdict(self.spec)}, [CONFIG_NAME, WEIGHTS_NAME],
                       trained_against=trained_against, recipe=recipe)
        return out

    @classmethod
    def load(cls, path: str | Path, map_location: str = "cpu") -> "VoWHead":
        """Load a head saved by :meth:`save`; every key must match (no partial loads). Eval mode. The
        directory must be a ``policy_head`` checkpoint (its ``manifest.json``) with every listed file."""
        from seal.core.manifest import read_manifest
        from seal.core.weights import load_safetensors

        root = Path(path)
        read_manifest(root, "policy_head")
        cfg_path, weights_path = root / CONFIG_NAME, root / WEIGHTS_NAME
        for p in (cfg_path, weights_path):
            if not p.is_file():
                raise InputError(f"policy head file missing (expected {CONFIG_NAME} and {WEIGHTS_NAME})", p)
        spec = _read_spec(cfg_path)
        head = cls(spec)
        state = load_safetensors(weights_path, device=map_location, what="policy head")  # damaged or NaN: InputError
        expected = set(head.state_dict())
        if set(state) != expected:
            raise InputError(f"weights do not match the head in {CONFIG_NAME}: missing "
                             f"{sorted(expected - set(state))}, unexpected {sorted(set(state) - expected)}",
                             weights_path)
        try:
            head.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise InputError(f"weights do not match the head in {CONFIG_NAME}: {str(exc).splitlines()[0]}",
                             weights_path) from None
        return head.eval()


def _read_spec(path: Path) -> HeadSpec:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"malformed JSON ({exc})", path) from None
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        found = raw.get("format") if isinstance(raw, dict) else type(raw).__name__
        raise InputError(f"expected format {FORMAT!r}, found {found!r}", path)
    raw = {k: v for k, v in raw.items() if k != "format"}
    known = {f.name for f in fields(HeadSpec)}
    required = {f.name for f in fields(HeadSpec) if f.default is MISSING}
    if set(raw) - known or required - set(raw):
        raise InputError(f"head config keys: unexpected {sorted(set(raw) - known)}, missing "
                         f"{sorted(required - set(raw))}", path)
    try:
        spec = HeadSpec(**raw)
        space_actions(spec.action_space)  # type: ignore[arg-type]
    except (TypeError, ValueError) as exc:
        raise InputError(f"invalid head config ({exc})", path) from None
    return spec
