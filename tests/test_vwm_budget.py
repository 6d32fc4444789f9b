import numpy as np
import pytest
from PIL import Image

from seal.core.errors import ConfigError
from vwm.budget import VisionBudget, VisionBudgetConfig, prune_token_indices
from vwm.ledger import CostLedger


def test_target_size_respects_long_side_and_pixels():
    b = VisionBudget(VisionBudgetConfig(coarse_long_side=336, coarse_max_pixels=336 * 200, full_long_side=1000))
    assert b.target_size(2400, 1200, "full") == (1000, 500)
    w, h = b.target_size(2400, 1200, "coarse")
    assert max(w, h) <= 336 and w * h <= 336 * 200 + 400
    assert b.target_size(100, 50, "full") == (100, 50)  # never upsample


def test_resize_and_heuristic_tokens():
    b = VisionBudget(VisionBudgetConfig(patch_size=14, full_long_side=700, full_max_pixels=10**7))
    img = Image.new("RGB", (1400, 700))
    small = b.resize(img, "full")
    assert small.size == (700, 350)
    assert b.tokens_for(small) == 50 * 25


def test_pruning_proxy_tokens_and_indices():
    b = VisionBudget(VisionBudgetConfig(pruning_mode="stride", pruning_ratio=0.25))
    assert b.kept_tokens(576) == 144
    idx = prune_token_indices(np.zeros(16), 0.25, "stride")
    assert idx.tolist() == [0, 4, 8, 12]
    norms = np.array([0.1, 5.0, 0.2, 4.0, 0.3, 3.0])
    assert prune_token_indices(norms, 0.5, "topk_norm").tolist() == [1, 3, 5]


@pytest.mark.parametrize("field, value", [("pruning_ratio", 0.0), ("coarse_long_side", 4000)])
def test_bad_budget_config(field, value):
    with pytest.raises(ConfigError, match=field):
        VisionBudgetConfig(**{field: value})


def test_ledger_totals_and_stages():
    ledger = CostLedger(vision_tokens_global=576, vision_tokens_crops=2 * 144, vision_tokens_search=3 * 256)
    with ledger.stage("search"):
        pass
    with ledger.stage("search"):
        pass
    assert ledger.vision_tokens == 576 + 288 + 768
    j = ledger.close().to_json()
    assert j["vision_tokens"] == 1632 and "search" in j["seconds"] and j["peak_rss_mb"] > 0
