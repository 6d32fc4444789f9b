"""The config loader and every command's config: layering, overrides, errors naming the field and the
file, ``include:`` stacks, the recipe stacks of the shipped models (each resolved through the real
parser and compared with what its checkpoint's manifest records), and every other YAML under configs/."""

import json
from dataclasses import asdict
from pathlib import Path

import pytest

from seal.agent.config import AskConfig
from seal.cli.main import main
from seal.config import COMMANDS, command_config, dump_yaml, load
from seal.core.errors import ConfigError
from seal.core.manifest import read_manifest

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"
CHECKPOINTS = ROOT / "checkpoints"
KINDS = {"vsm": "train-vsm", "vqa": "train-vqa", "policy": "train-policy", "crop_matcher": "train-crop-matcher",
         "merger": "train-merger", "pruners": "train-pruners"}
STACKS = sorted((CONFIGS / "train").glob("*/*.yaml"))
"""Every named recipe: ``seal train KIND --recipe NAME`` is ``configs/train/KIND/NAME.yaml`` and its includes."""


def recipe(kind: str, name: str):
    """The resolved config of ``seal train KIND --recipe NAME`` (the real parser, includes followed)."""
    return load([CONFIGS / "train" / kind / f"{name}.yaml"], cls=command_config(KINDS[kind]), search_profile=False)


def command_of(path: Path) -> str:
    """The command a YAML under configs/ is for (a training stack by its folder or name; else ``ask``)."""
    if path.parent.parent.name == "train":
        return KINDS[path.parent.name]
    for prefix, command in (("vsm_", "train-vsm"), ("vqa_", "train-vqa"), ("crop_matcher", "train-crop-matcher"),
                            ("policy_ablate_", "train-policy")):
        if path.name.startswith(prefix):
            return command
    return "ask"


# ---- the shipped models' stacks -------------------------------------------------------------------------

def test_the_shipped_vqa_models_are_their_recipes():
    """``checkpoints/vqa_tiny`` and ``vqa_check_tiny`` record the config their stacks resolve to: the
    manifest's ``config`` (answer layout, how it checks hits) and the sizes of ``backbone.json``."""
    from training.vqa_recipe import model_config

    for name, folder in (("tiny", "vqa_tiny"), ("hit_check", "vqa_check_tiny")):
        cfg = recipe("vqa", name)
        manifest = read_manifest(CHECKPOINTS / folder, "vqa")
        assert manifest.config == model_config(cfg), folder
        assert json.loads((CHECKPOINTS / folder / "backbone.json").read_text()) == asdict(cfg.vqa_train.backbone)
    tiny = recipe("vqa", "tiny")
    assert tiny.vqa_train.data.probe_large_first and tiny.train.max_steps == 8000 and tiny.synth.n == 2000
    assert recipe("vqa", "hit_check").synth.seed == 7  # new scenes per stage: the scenes' seed, not the run's


def test_the_shipped_search_model_is_its_recipe():
    """``checkpoints/vsm_tiny``: its heads, search defaults and crop matcher are what ``--recipe tiny`` builds."""
    cfg = recipe("vsm", "tiny")
    manifest = read_manifest(CHECKPOINTS / "vsm_tiny", "vsm")
    assert manifest.config["vsm"] == json.loads(json.dumps(cfg.vsm_train.vsm.to_dict()))
    assert manifest.search_defaults == cfg.vsm_train.search_defaults
    assert cfg.vsm_train.crop_matcher and manifest.second_stage["path"] == "crop_matcher"
    matcher = read_manifest(CHECKPOINTS / "vsm_tiny" / "crop_matcher", "crop_matcher")
    assert matcher.config == asdict(cfg.crop_matcher_train.matcher)
    backbone = json.loads((CHECKPOINTS / "vsm_tiny" / "backbone" / "config.json").read_text())
    assert backbone["text_config"]["hidden_size"] == cfg.vsm_train.backbone.text_hidden
    assert cfg.train.max_steps == 3600 and cfg.vsm_train.stem_pretrain.train.max_steps == 800
    assert cfg.crop_matcher_train.train.max_steps == 6000


def test_the_crop_matcher_recipe_is_the_search_models_last_stage():
    """``seal train crop-matcher --recipe tiny`` trains the shipped search model's matcher alone: the same
    scenes and settings as the last stage of ``seal train vsm --recipe tiny`` (only its folders differ)."""
    alone, stage = recipe("crop_matcher", "tiny"), recipe("vsm", "tiny")
    assert alone.synth == stage.synth and alone.seed == stage.seed
    assert alone.crop_matcher_train.matcher == stage.crop_matcher_train.matcher
    assert alone.crop_matcher_train.data == stage.crop_matcher_train.data
    assert asdict(alone.crop_matcher_train.train) == {**asdict(stage.crop_matcher_train.train),
                                                      "out_dir": alone.crop_matcher_train.train.out_dir}


@pytest.mark.parametrize("name, folder", [("tiny", "policy_tiny"), ("tiny_lam0.05", "policy_tiny_lam0.05"),
                                          ("tiny_lam0.01", "policy_tiny_lam0.01")])
def test_the_shipped_policy_heads_are_their_recipes(name, folder):
    cfg = recipe("policy", name)
    manifest = read_manifest(CHECKPOINTS / folder, "policy_head")
    head = {k: v for k, v in manifest.config.items() if k not in ("format", "in_features")}
    assert head == asdict(cfg.head) and cfg.policy_train.export_dir == f"checkpoints/{folder}"
    trained = manifest.recipe["trained_with"]
    assert trained["lambda_cost"] == cfg.policy_train.lambda_cost
    assert trained["stage1_steps"] == cfg.policy_train.stage1_steps
    assert trained["train"]["max_steps"] == cfg.train.max_steps  # stage 1's steps, then stage 2's
    assert trained["policy"]["escalation_margin_threshold"] == cfg.policy.escalation_margin_threshold
    assert (cfg.synth.n, cfg.synth.long_side, cfg.synth.split, cfg.synth.suite) == (300, 1600, "train", "mixed")


@pytest.mark.parametrize("path", STACKS, ids=[f"{p.parent.name}/{p.name}" for p in STACKS])
def test_every_recipe_stack_loads(path):
    cfg = load([path], cls=command_config(KINDS[path.parent.name]), search_profile=False)
    assert len(dump_yaml(cfg).splitlines()) > 10


@pytest.mark.parametrize("path", sorted(p for p in CONFIGS.glob("**/*.yaml") if p.parent.name != "accelerate"),
                         ids=lambda p: str(p.relative_to(CONFIGS)))
def test_every_yaml_under_configs_loads_with_its_command(path):
    """Every seal config loads with its command's config (configs/accelerate/ holds accelerate's own
    launcher files, loaded by accelerate's classes in tests/test_train_ddp.py)."""
    load([path], cls=command_config(command_of(path)), search_profile=False)


def test_one_seed_per_training_command():
    """A training command has one ``seed`` (the model's init, its data choices, the batch order);
    ``synth.seed`` picks the scenes. A nested model seed may only repeat it."""
    for command in ("train-vsm", "train-vqa", "train-policy", "train-crop-matcher"):
        cfg = load([], ["seed=4"], cls=command_config(command), search_profile=False)
        assert cfg.seed == 4
    vsm = load([], ["seed=4"], cls=command_config("train-vsm"), search_profile=False)
    assert vsm.vsm_train.backbone.seed == vsm.vsm_train.vsm.seed == 4
    with pytest.raises(ConfigError, match="seed"):
        load([], ["vqa_train.backbone.seed=2"], cls=command_config("train-vqa"), search_profile=False)


def test_seal_train_names_its_recipes(capsys, tmp_path):
    assert main(["train", "vsm", "--recipe", "nope", f"--train.out_dir={tmp_path}"]) == 2
    err = capsys.readouterr().err
    assert "nope" in err and "fast" in err and "tiny" in err


# ---- include: ---------------------------------------------------------------------------------------------

def test_include_stacks_files_relative_to_the_including_file(tmp_path):
    (tmp_path / "base").mkdir()
    (tmp_path / "base" / "a.yaml").write_text("search:\n  max_nodes: 10\n  overlap: 0.2\n")
    (tmp_path / "base" / "b.yaml").write_text("include: [a.yaml]\nsearch:\n  max_nodes: 20\n")
    (tmp_path / "top.yaml").write_text("include: [base/b.yaml]\nsearch:\n  strategy: bfs\n")
    cfg = load([tmp_path / "top.yaml"], search_profile=False)
    assert (cfg.search.max_nodes, cfg.search.overlap, cfg.search.strategy) == (20, 0.2, "bfs")
    (tmp_path / "later.yaml").write_text("include: [top.yaml]\nsearch:\n  max_nodes: 5\n")
    assert load([tmp_path / "later.yaml"], search_profile=False).search.max_nodes == 5  # the including file wins


def test_an_include_cycle_or_a_missing_include_names_the_file(tmp_path):
    (tmp_path / "a.yaml").write_text("include: [b.yaml]\n")
    (tmp_path / "b.yaml").write_text("include: [a.yaml]\n")
    with pytest.raises(ConfigError, match=r"include cycle \(a.yaml -> b.yaml -> a.yaml\)") as err:
        load([tmp_path / "a.yaml"], search_profile=False)
    assert "a.yaml" in str(err.value)
    (tmp_path / "self.yaml").write_text("include: [self.yaml]\n")
    with pytest.raises(ConfigError, match="self.yaml"):
        load([tmp_path / "self.yaml"], search_profile=False)
    (tmp_path / "gone.yaml").write_text("include: [missing.yaml]\n")
    with pytest.raises(ConfigError, match="missing.yaml"):
        load([tmp_path / "gone.yaml"], search_profile=False)
    (tmp_path / "bad.yaml").write_text("include: a.yaml\n")
    with pytest.raises(ConfigError, match="include: expected a list"):
        load([tmp_path / "bad.yaml"], search_profile=False)


# ---- the loader ----------------------------------------------------------------------------------------------

def test_defaults_validate():
    cfg = load(search_profile=False)
    assert isinstance(cfg, AskConfig)
    assert cfg.search.confidence_high == 0.5 and cfg.search.min_leaf_side == 224
    for command in COMMANDS:
        command_config(command)()  # every command's defaults are a valid config


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


def test_a_command_refuses_a_section_it_does_not_read():
    with pytest.raises(ConfigError, match="unknown config key 'vsm_train'"):
        load([], ["vsm_train.export_dir=x"], cls=command_config("train-vqa"))


def test_malformed_yaml_names_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("search: [unclosed\n")
    with pytest.raises(ConfigError, match="bad.yaml"):
        load([bad])


def test_cfg_command_prints_resolved(capsys):
    assert main(["cfg", "ask", "--search.max_nodes=32", "--search.strategy", "dfs"]) == 0
    out = capsys.readouterr().out
    assert "max_nodes: 32" in out and "strategy: dfs" in out
    assert main(["cfg", "train-vqa", "--config", str(CONFIGS / "train" / "vqa" / "tiny.yaml")]) == 0
    out = capsys.readouterr().out
    assert "vqa_train:" in out and "max_steps: 8000" in out and "policy:" not in out


def test_cfg_command_bad_override_exit_2(capsys):
    assert main(["cfg", "--search.max_nodes=-1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "max_nodes" in err[0]


def test_round_trip_dump():
    import yaml

    from seal.config import from_dict

    for command in ("ask", "train-vsm", "train-policy"):
        cls = command_config(command)
        cfg = load([], [], cls=cls, search_profile=False)
        assert from_dict(cls, yaml.safe_load(dump_yaml(cfg))) == cfg
    assert load([], ["search.overlap=0.25"]) != load([], [])


@pytest.mark.parametrize("text, value", [("1e-06", 1e-6), ("3E-4", 3e-4), ("2.5e+3", 2500.0), ("5e1", 50.0)])
def test_exponent_floats_read_as_numbers(tmp_path, text, value):
    # PyYAML (YAML 1.1) leaves "1e-06" a string; a float field takes it as the number it means
    vqa = command_config("train-vqa")
    assert load([], [f"train.lr={text}"], cls=vqa).train.lr == pytest.approx(value)
    f = tmp_path / "c.yaml"
    f.write_text(f"train:\n  weight_decay: {text}\n")
    assert load([f], cls=vqa).train.weight_decay == pytest.approx(value)


def test_strings_that_are_not_numbers_still_fail_for_float_fields():
    for bad in ("1e-x", "fast", "e5"):
        with pytest.raises(ConfigError, match=r"train\.lr"):
            load([], [f"train.lr={bad}"], cls=command_config("train-vqa"))


def test_a_search_models_defaults_are_layered_under_files_and_overrides(tmp_path):
    from seal.core.manifest import write_manifest

    model = tmp_path / "vsm"
    model.mkdir()
    (model / "vsm_config.json").write_text("{}")
    write_manifest(model, "vsm", {}, ["vsm_config.json"], search_defaults={"confidence_high": 0.3, "compare_nodes": 4})
    user = tmp_path / "user.yaml"
    user.write_text("search:\n  compare_nodes: 6\n")
    cfg = load([], [f"models.vsm_path={model}"])
    assert (cfg.search.confidence_high, cfg.search.compare_nodes) == (0.3, 4)
    cfg = load([user], [f"models.vsm_path={model}", "search.confidence_high=0.4"])
    assert (cfg.search.confidence_high, cfg.search.compare_nodes) == (0.4, 6)  # the user's values win
    assert load([], [f"models.vsm_path={model}", "models.localizer=oracle"]).search.confidence_high == 0.5
    assert load([], [f"models.vsm_path={model}"], search_profile=False).search.confidence_high == 0.5
    assert load([], [], search_profile=model).search.compare_nodes == 4
