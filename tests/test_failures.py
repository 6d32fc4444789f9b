"""Every failure is one line, exit 2, nothing lost (issue 25, item 9).

Each case runs the real CLI (in-process ``main`` with fd-level capture, or a subprocess) on a damaged
copy of a shipped checkpoint, a bad output folder, a bad config file or a bad question, and checks:
exit code 2, exactly one non-empty stderr line, and that the line names the file.
"""

import errno
import json
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from seal.cli.main import main

ROOT = Path(__file__).resolve().parents[1]
CHECKPOINTS = ROOT / "checkpoints"


# ---- helpers -----------------------------------------------------------------------------------
def _one_line(code: int, out: str, err: str, command: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, f"exit {code}\nstdout: {out[-1500:]}\nstderr: {err[-3000:]}"
    assert len(lines) == 1, f"expected one stderr line, found {len(lines)}:\n{err[-3000:]}"
    assert lines[0].startswith(f"seal {command}: error: "), lines[0]
    return lines[0]


def fail(argv: list, capfd) -> tuple[str, str]:
    """``(the one stderr line, stdout)`` of ``seal *argv`` run in this process (fd-level capture)."""
    capfd.readouterr()
    code = main([str(a) for a in argv])
    out, err = capfd.readouterr()
    return _one_line(code, out, err, str(argv[0])), out


def fail_subprocess(argv: list) -> tuple[str, str]:
    """As :func:`fail`, in a fresh ``python -m seal`` process (no traceback, no library report)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1")
    proc = subprocess.run([sys.executable, "-m", "seal", *map(str, argv)], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=120)
    assert "Traceback" not in proc.stderr, proc.stderr
    return _one_line(proc.returncode, proc.stdout, proc.stderr, str(argv[0])), proc.stdout


def copy_checkpoint(name: str, tmp_path: Path) -> Path:
    return Path(shutil.copytree(CHECKPOINTS / name, tmp_path / name))


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # "incomplete metadata, file not fully covered"


def huge_header(path: Path) -> None:
    path.write_bytes(struct.pack("<Q", 2**40) + b"{}")  # "header too large"


def poison_rows(path: Path, value: float, rows=(1, 3)) -> str:
    """Write ``value`` (NaN / inf) into some rows of the first 2-D float tensor; returns its name."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    with safe_open(str(path), framework="pt") as f:
        metadata = f.metadata()
    state = load_file(str(path))
    name = next(k for k in sorted(state) if state[k].ndim == 2 and state[k].is_floating_point()
                and state[k].shape[0] > max(rows))
    state[name][list(rows)] = value
    save_file(state, str(path), metadata=metadata)
    return name


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    """A small image with a red disc and its V*Bench annotation (for the oracle localizer)."""
    d = tmp_path_factory.mktemp("scene")
    image = Image.new("RGB", (320, 240), (120, 130, 125))
    ImageDraw.Draw(image).ellipse([200, 150, 229, 179], fill=(220, 30, 30))
    image.save(d / "img.png")
    (d / "img.json").write_text(json.dumps({"target_object": ["red disc"], "bbox": [[200, 150, 30, 30]],
                                            "question": "What is the colour of the disc?",
                                            "options": ["red", "blue"]}))
    return d / "img.png", d / "img.json"


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    from eval.synth.config import SynthConfig
    from eval.synth.generate import generate_benchmark

    out = tmp_path_factory.mktemp("synth")
    generate_benchmark(SynthConfig(n=2, seed=1, split="test", suite="vstar", long_side=480), out)
    return out


def _search(scene, *extra):
    image, ann = scene
    return ["search", "--localizer", "oracle", "--image", image, "--annotation", ann, "--target", "red disc",
            *extra]


def _ask_oracle(scene, *extra):
    image, ann = scene
    return ["ask", "--image", image, "--annotation", ann, "--localizer", "oracle", "--policy", "no_vision",
            "--question", "What is the colour of the disc?", *extra]


# ---- 1. truncated or corrupt safetensors -------------------------------------------------------
def test_truncated_safetensors_in_a_subprocess(tmp_path, scene):
    vsm = copy_checkpoint("vsm_tiny", tmp_path)
    truncate(vsm / "decoders.safetensors")
    line, _ = fail_subprocess(["search", "--model", vsm, "--image", scene[0], "--target", "red disc"])
    assert str(vsm / "decoders.safetensors") in line and "truncated or corrupt" in line


def _loading(checkpoint: str, ckpt, scene) -> list:
    """The command that loads the copied ``checkpoint`` at ``ckpt``: a search (the search model) or a
    question (the VQA LLM, the policy head)."""
    if checkpoint == "vsm_tiny":
        return ["search", "--model", ckpt, "--image", scene[0], "--target", "red disc"]
    if checkpoint == "vqa_tiny":
        return _ask_oracle(scene, f"--models.vqa_path={ckpt}")
    return _ask_oracle(scene)[:-2] + ["--policy", ckpt, "--question", "What is the colour of the disc?"]


@pytest.mark.parametrize("checkpoint, file, damage", [
    ("vsm_tiny", "backbone/model.safetensors", truncate),
    ("vsm_tiny", "adapter/adapter_model.safetensors", huge_header),
    ("vsm_tiny", "crop_matcher/crop_matcher.safetensors", truncate),
    ("vqa_tiny", "model.safetensors", huge_header),
    ("policy_tiny", "head.safetensors", truncate),
])
def test_corrupt_safetensors_name_the_file(tmp_path, scene, capfd, checkpoint, file, damage):
    ckpt = copy_checkpoint(checkpoint, tmp_path)
    damage(ckpt / file)
    line, _ = fail(_loading(checkpoint, ckpt, scene), capfd)
    assert str(ckpt / file) in line and "truncated or corrupt" in line


# ---- 2. NaN / inf weights ----------------------------------------------------------------------
@pytest.mark.parametrize("checkpoint, file, value", [
    ("vsm_tiny", "decoders.safetensors", float("nan")),
    ("vqa_tiny", "model.safetensors", float("inf")),
    ("policy_tiny", "head.safetensors", float("nan")),
])
def test_non_finite_weights_name_the_file_and_tensor(tmp_path, scene, capfd, checkpoint, file, value):
    ckpt = copy_checkpoint(checkpoint, tmp_path)
    tensor = poison_rows(ckpt / file, value)
    line, _ = fail(_loading(checkpoint, ckpt, scene), capfd)
    assert str(ckpt / file) in line and repr(tensor) in line and "expected finite weights" in line
    assert ("NaN" if value != value else "infinite") in line


# ---- 3. config.json of other sizes -------------------------------------------------------------
def test_config_sizes_that_do_not_match_the_weights(tmp_path, scene):
    vqa = copy_checkpoint("vqa_tiny", tmp_path)
    config = json.loads((vqa / "config.json").read_text())
    config["text_config"]["hidden_size"] = 256
    (vqa / "config.json").write_text(json.dumps(config))
    line, _ = fail_subprocess(_ask_oracle(scene, f"--models.vqa_path={vqa}"))
    assert str(vqa) in line and "does not match the weights" in line and "[572, 192]" in line
    assert "LOAD REPORT" not in line


# ---- 4. a pickled .bin that torch.load(weights_only=True) refuses ------------------------------
def test_pickled_bin_is_refused(tmp_path, scene, capfd):
    import torch

    vqa = copy_checkpoint("vqa_tiny", tmp_path)
    (vqa / "manifest.json").unlink()  # a plain transformers checkpoint, as .bin weights come
    (vqa / "model.safetensors").unlink()
    torch.save({"lm_head.weight": torch.zeros(2, 2), "made_by": Path("/tmp")}, vqa / "pytorch_model.bin")
    line, _ = fail(_ask_oracle(scene, f"--models.vqa_path={vqa}"), capfd)
    assert str(vqa / "pytorch_model.bin") in line and "refused" in line and "plain tensor file" in line


# ---- 5. a malformed policy checkpoint fails when seal eval starts ------------------------------
def _bad_lambda_cost(policy: Path) -> None:
    manifest = json.loads((policy / "manifest.json").read_text())
    manifest["recipe"]["trained_with"]["lambda_cost"] = "lots"  # read only for the results row
    (policy / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize("file, damage", [
    ("manifest.json", _bad_lambda_cost),
    ("head.json", lambda policy: (policy / "head.json").write_text('{"format": "seal.policy.VoWHead/1", "in_f')),
])
def test_malformed_policy_files_fail_before_any_question(tmp_path, bench, capfd, file, damage):
    policy = copy_checkpoint("policy_tiny", tmp_path)
    damage(policy)
    out = tmp_path / "out"
    line, _ = fail(["eval", "--dataset", "synth", "--path", bench, "--output-dir", out, "--no-progress",
                    "--models.localizer=oracle", f"--policy.checkpoint={policy}"], capfd)
    assert str(policy / file) in line
    assert not (out / "predictions.jsonl").exists()  # no question was answered


# ---- 6. output folders ---------------------------------------------------------------------------
def _read_only(monkeypatch, folder: Path) -> None:
    """``folder`` refuses new files: chmod for a normal user; root ignores permissions, so its probe
    write is refused as a read-only file system would."""
    import seal.core.outputs as outputs

    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        folder.chmod(0o555)
        return

    def refuse(file, *args, **kwargs):
        if Path(file).parent == folder:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(file))
        return open(file, *args, **kwargs)

    monkeypatch.setattr(outputs, "open", refuse, raising=False)


@pytest.mark.parametrize("where", ["file", "under_file", "read_only"])
def test_search_trace_dir_fails_before_the_search(tmp_path, scene, capfd, monkeypatch, where):
    blocker = tmp_path / "blocker"
    blocker.write_text("a file")
    trace = {"file": blocker, "under_file": blocker / "trace", "read_only": tmp_path / "ro"}[where]
    if where == "read_only":
        _read_only(monkeypatch, trace)
    line, out = fail(_search(scene, "--trace-dir", trace), capfd)
    assert str(trace) in line and "--trace-dir" in line
    assert "searching" not in out and "found at" not in out  # before the search, not after it


def test_search_disk_full_while_writing_the_trace(tmp_path, scene, capfd, monkeypatch):
    import search.render

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(search.render, "write_search_trace", full)
    trace = tmp_path / "trace"
    line, _ = fail(_search(scene, "--trace-dir", trace), capfd)
    assert str(trace) in line and "no space left" in line


def test_ask_trace_dir_is_a_file(tmp_path, scene, capfd):
    blocker = tmp_path / "blocker"
    blocker.write_text("a file")
    line, out = fail(_ask_oracle(scene, "--trace-dir", blocker), capfd)
    assert str(blocker) in line and "question" not in out  # before any model loads


def test_eval_output_dir_under_a_file(tmp_path, bench, capfd):
    blocker = tmp_path / "blocker"
    blocker.write_text("a file")
    line, _ = fail(["eval", "--dataset", "synth", "--path", bench, "--output-dir", blocker / "out", "--no-progress",
                    "--models.localizer=oracle"], capfd)
    assert str(blocker / "out") in line and "is a file" in line


def test_bench_synth_out_read_only_and_disk_full(tmp_path, capfd, monkeypatch):
    out = tmp_path / "ro"
    with monkeypatch.context() as m:
        _read_only(m, out)
        line, _ = fail(["bench", "synth", "--out", out, "--n", "2"], capfd)
        assert str(out) in line and "writable" in line
    if os.geteuid() != 0:
        out.chmod(0o755)

    import eval.synth.generate

    def full(cfg, folder, overwrite=False):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(eval.synth.generate, "generate_benchmark", full)
    out2 = tmp_path / "full"
    line, _ = fail(["bench", "synth", "--out", out2, "--n", "2"], capfd)
    assert str(out2) in line and "no space left" in line


def test_train_out_dir_is_a_file(tmp_path, capfd):
    blocker = tmp_path / "blocker"
    blocker.write_text("a file")
    line, out = fail(["train", "policy", f"--train.out_dir={blocker}"], capfd)
    assert str(blocker) in line and "train.out_dir" in line and out == ""


# ---- 7. a config file's content errors name the file ---------------------------------------------
def test_config_file_value_error_names_the_file(tmp_path, scene, capfd):
    bad = tmp_path / "bad.yaml"
    bad.write_text("search:\n  max_nodes: lots\n")
    line, _ = fail(_search(scene, "--config", bad), capfd)
    assert str(bad) in line and "search.max_nodes" in line and "lots" in line


# ---- 8. a question longer than the model's context -----------------------------------------------
def test_question_longer_than_the_context(scene, capfd):
    image, ann = scene
    question = "What colour is the small disc next to the large grey square? " * 150
    line, _ = fail(["ask", "--image", image, "--annotation", ann, "--localizer", "oracle", "--policy", "no_vision",
                    "--question", question], capfd)
    assert "question too long" in line and "tokens" in line and "1024" in line
    assert str(Path("checkpoints") / "vqa_tiny" / "config.json") in line


# ---- 9. empty option strings -------------------------------------------------------------------
def test_empty_option_is_refused(scene, capfd):
    line, _ = fail(_ask_oracle(scene, "--options", "red", " "), capfd)
    assert "--options" in line and "option 2" in line
