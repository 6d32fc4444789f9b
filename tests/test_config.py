from pathlib import Path

import pytest

from seal.cli.main import main
from seal.config import Config, dump_yaml, load
from seal.core.errors import ConfigError

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("**/*.yaml"))


def test_defaults_validate():
    cfg = load(search_profile=False)
    assert isinstance(cfg, Config)
    assert cfg.search.confidence_high == 0.5 and cfg.search.min_leaf_side == 224


def test_the_shipped_search_models_profile_is_the_default_search():
    """``checkpoints/vsm_tiny/search.yaml``, written by its recipe (vsm_train.search_profile)."""
    train = Path(__file__).resolve().parents[1] / "configs" / "train"
    recipe = load([train / "vsm_fast.yaml", train / "vsm_fast_crop.yaml"], search_profile=False)
    cfg = load()
    assert recipe.vsm_train.search_profile and all(
        getattr(cfg.search, k) == v for k, v in recipe.vsm_train.search_profile.items())
    assert cfg.search.confidence_high == 0.3


def test_the_shipped_vqa_model_was_trained_by_its_documented_recipe():
    """``checkpoints/vqa_tiny/config.yaml`` (the run's resolved config) is what the one command of
    the README resolves to today: same scenes, loop and data."""
    from dataclasses import asdict

    root = Path(__file__).resolve().parents[1]
    recipe = load([root / "configs" / "train" / "vqa_tiny.yaml", root / "configs" / "train" / "vqa_fast_long.yaml"],
                  search_profile=False)
    shipped = load([root / "checkpoints" / "vqa_tiny" / "config.yaml"], search_profile=False)
    for section in ("synth", "train", "vqa_train", "vwm"):
        assert asdict(getattr(shipped, section)) == asdict(getattr(recipe, section)), section
    assert recipe.vqa_train.data.probe_large_first and recipe.train.max_steps == 8000


def test_layering_and_overrides(tmp_path):
    a = tmp_path / "a.yaml"
    b = tmp_path / "b.yaml"
    a.write_text("search:\n  max_nodes: 10\n  overlap: 0.2\n")
    b.write_text("search:\n  max_nodes: 20\n")
    cfg = load([a, b], ["search.strategy=bfs"])
    assert cfg.search.max_nodes == 20  # later file wins
    assert cfg.search.overlap == 0.2  # earlier file kept where not overridden
    assert cfg.search.strategy == "bfs"
    assert load([a, b], ["search.max_nodes=32"]).search.max_nodes == 32


@pytest.mark.parametrize(
    "override, needle",
    [
        ("search.bogus=1", "search.bogus"),
        ("search.max_nodes=abc", "search.max_nodes"),
        ("search.strategy=astar", "search.strategy"),
        ("search.confidence_low=0.9", "confidence_low"),
        ("search.max_nodes=0", "max_nodes"),
    ],
)
def test_bad_values_name_the_field(override, needle):
    with pytest.raises(ConfigError, match=needle.replace(".", r"\.")):
        load([], [override])


def test_malformed_yaml_names_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("search: [unclosed\n")
    with pytest.raises(ConfigError, match="bad.yaml"):
        load([bad])


def test_cfg_command_prints_resolved(capsys):
    assert main(["cfg", "--search.max_nodes=32", "--search.strategy", "dfs"]) == 0
    out = capsys.readouterr().out
    assert "max_nodes: 32" in out and "strategy: dfs" in out


def test_cfg_command_bad_override_exit_2(capsys):
    assert main(["cfg", "--search.max_nodes=-1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "max_nodes" in err[0]


def test_round_trip_dump():
    import yaml

    cfg = load([], ["search.overlap=0.25"])
    again = load([], [])
    from seal.config import from_dict

    assert from_dict(Config, yaml.safe_load(dump_yaml(cfg))) == cfg
    assert again != cfg


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_every_recipe_loads(path):
    load([path])


@pytest.mark.parametrize("text, value", [("1e-06", 1e-6), ("3E-4", 3e-4), ("2.5e+3", 2500.0), ("5e1", 50.0)])
def test_exponent_floats_read_as_numbers(tmp_path, text, value):
    # PyYAML (YAML 1.1) leaves "1e-06" a string; a float field takes it as the number it means
    assert load([], [f"train.lr={text}"]).train.lr == pytest.approx(value)
    f = tmp_path / "c.yaml"
    f.write_text(f"policy:\n  weight_decay: {text}\n")
    assert load([f]).policy.weight_decay == pytest.approx(value)


def test_strings_that_are_not_numbers_still_fail_for_float_fields():
    for bad in ("1e-x", "fast", "e5"):
        with pytest.raises(ConfigError, match=r"train\.lr"):
            load([], [f"train.lr={bad}"])


def test_a_search_models_profile_is_layered_under_files_and_overrides(tmp_path):
    from seal.config import load

    model = tmp_path / "vsm"
    model.mkdir()
    (model / "search.yaml").write_text("search:\n  confidence_high: 0.3\n  compare_nodes: 4\n")
    user = tmp_path / "user.yaml"
    user.write_text("search:\n  compare_nodes: 6\n")
    cfg = load([], [f"models.vsm_path={model}"])
    assert (cfg.search.confidence_high, cfg.search.compare_nodes) == (0.3, 4)
    cfg = load([user], [f"models.vsm_path={model}", "search.confidence_high=0.4"])
    assert (cfg.search.confidence_high, cfg.search.compare_nodes) == (0.4, 6)  # the user's values win
    assert load([], [f"models.vsm_path={model}", "models.localizer=oracle"]).search.confidence_high == 0.5
    assert load([], [f"models.vsm_path={model}"], search_profile=False).search.confidence_high == 0.5
    assert load([], [], search_profile=model).search.compare_nodes == 4
    assert load([], [f"models.vsm_path={tmp_path / 'missing'}"]).search.confidence_high == 0.5  # fails when loaded


@pytest.mark.parametrize("text, match", [("agent:\n  vsm_path: elsewhere\n", "one mapping"),
                                         ("search: 3\n", "expected a mapping"),
                                         ("search:\n  confidence_hi: 0.3\n", "confidence_hi"),
                                         ("search:\n  confidence_high: 0.1\n", "confidence_low"),
                                         ("search: [\n", "unreadable")])
def test_a_bad_search_profile_is_an_error_naming_it(tmp_path, text, match):
    from seal.config import load

    (tmp_path / "search.yaml").write_text(text)
    with pytest.raises(ConfigError, match=match):
        load([], [], search_profile=tmp_path)
