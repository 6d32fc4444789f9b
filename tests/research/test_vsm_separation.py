"""research.vsm_separation: how well the search model's best-box score separates present from absent
names, on validation scenes cut as the training data is."""

import json
from pathlib import Path

from research.vsm_separation import main, measure

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "checkpoints" / "vsm_tiny"


def test_separation_reports_auc_and_firing_rates(tmp_path):
    report = measure(str(SHIPPED), 1, str(ROOT / "configs/train/vsm/tiny.yaml"), cache_dir=str(tmp_path / "cache"))
    assert report["rows_present"] > 0 and report["rows_absent"] > 0
    assert 0.0 <= report["auc"] <= 1.0 and 0.0 <= report["fires_absent"] <= 1.0
    # the shipped model keeps the attribute head it was trained with: colour, pattern, shape
    assert set(report["attribute_accuracy"]) == {"color", "pattern", "shape"}
    out = tmp_path / "sep.json"
    assert main(["--model", str(SHIPPED), "--n-scenes", "1", "--out", str(out), "--config",
                 str(ROOT / "configs/train/vsm/tiny.yaml"), "--cache-dir", str(tmp_path / "cache")]) == 0
    assert json.loads(out.read_text())["auc"] == report["auc"]
