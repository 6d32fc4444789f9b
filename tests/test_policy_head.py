"""VoWHead shapes, standardisation and strict safetensors save/load."""

import json

import pytest
import torch

from seal.core.errors import InputError
from seal.policy.actions import Action
from seal.policy.head import CONFIG_NAME, WEIGHTS_NAME, HeadSpec, VoWHead


def _head(space="ternary", f=10, seed=0):
    torch.manual_seed(seed)
    return VoWHead(HeadSpec(in_features=f, hidden_dim=8, action_space=space, feature_mode="hidden_entropy"))


@pytest.mark.parametrize("space, n_actions", [("binary", 2), ("ternary", 3)])
def test_head_shapes(space, n_actions):
    head = _head(space)
    logits = head(torch.randn(5, 10))
    assert logits.shape == (5, n_actions) and logits.dtype == torch.float32
    probs = head.action_probs(torch.randn(4, 10))
    torch.testing.assert_close(probs.sum(-1), torch.ones(4))
    assert head.actions[-1] is Action.FULL_VISION and head.actions[0] is Action.NO_VISION
    with pytest.raises(ValueError, match=r"\(B, 10\)"):
        head(torch.randn(5, 9))


def test_standardisation_is_applied():
    head = _head(f=3)
    x = torch.tensor([[0.0, 100.0, 5.0], [2.0, 300.0, 5.0]])
    head.set_standardization(x)
    torch.testing.assert_close(head.feature_mean, torch.tensor([1.0, 200.0, 5.0]))
    assert head.feature_std[2] > 0  # constant feature: clamped, no division by zero
    # a shift of the raw features by the fitted mean gives the logits of the zero vector
    torch.testing.assert_close(head(head.feature_mean[None]), head.mlp(torch.zeros(1, 3)))


def test_save_load_round_trip_identical_logits(tmp_path):
    head = _head("binary").eval()
    head.set_standardization(torch.randn(20, 10) * 3 + 1)
    x = torch.randn(7, 10)
    head.save(tmp_path / "h")
    again = VoWHead.load(tmp_path / "h")
    assert again.spec == head.spec and not again.training
    torch.testing.assert_close(again(x), head(x), rtol=0, atol=0)
    other = _head("binary", seed=1).eval()
    assert not torch.equal(other(x), head(x))  # the weights really came from the file


def test_load_is_strict(tmp_path):
    _head().save(tmp_path / "h")
    cfg = json.loads((tmp_path / "h" / CONFIG_NAME).read_text())
    cfg["in_features"] = 11  # weights no longer fit
    (tmp_path / "h" / CONFIG_NAME).write_text(json.dumps(cfg))
    with pytest.raises(InputError, match="do not match"):
        VoWHead.load(tmp_path / "h")
    cfg["in_features"] = 10
    cfg["extra"] = 1
    (tmp_path / "h" / CONFIG_NAME).write_text(json.dumps(cfg))
    with pytest.raises(InputError, match="unexpected \\['extra'\\]"):
        VoWHead.load(tmp_path / "h")
    (tmp_path / "h" / WEIGHTS_NAME).unlink()
    with pytest.raises(InputError, match="missing"):
        VoWHead.load(tmp_path / "h")
