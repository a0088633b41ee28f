"""The entry scripts as a user runs them: train, sweep, ddp, visualize sweep, and bad input."""
from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest

from tests.conftest import QUIET_TRAINER, TINY, run_cli

TINY_LINES = [*TINY["lines"], *QUIET_TRAINER]


def _args(tmp_path: Path, *extra: str) -> list[str]:
    return [f"paths.root_dir={tmp_path}", *extra]


@pytest.fixture(scope="module")
def trained_root(tmp_path_factory):
    """`python train.py -m model=cnn_basic,multihead` on tiny lines: a two-run sweep."""
    root = tmp_path_factory.mktemp("cli")
    proc = run_cli("train.py", ["-m", "model=cnn_basic,multihead", *_args(root, *TINY_LINES)], cwd=root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return root, proc


def test_train_sweep_writes_one_complete_run_per_combination(trained_root):
    root, proc = trained_root
    records = [json.loads(p.read_text()) for p in (root / "outputs" / "train" / "multirun").rglob("run.json")]
    assert sorted(r["model"] for r in records) == ["cnn_basic", "multihead"]
    assert all(r["status"] == "complete" and Path(r["best_checkpoint"]).is_file() for r in records)
    assert proc.stdout.count("training complete") == 2  # the one-screen summary of each run
    # the tiny runs are cut short (3 batches an epoch): the summary names why and how to use one anyway
    assert proc.stdout.count("CUT SHORT:       limit_train_batches=3") == 2
    multihead = next(r for r in records if r["model"] == "multihead")
    assert f"python visualize.py dataset=lines ckpt={multihead['best_checkpoint']} job=all" in proc.stdout


def test_visualize_sweep_renders_each_combination_and_an_index(trained_root):
    root, _ = trained_root
    proc = run_cli("visualize.py", ["-m", "job=activations,gradcam,evaluate", "model=multihead",
                                    "evaluate.methods=[gradcam,saliency]", "evaluate.num_images=20",
                                    "evaluate.faithfulness_images=4", "evaluate.sanity_images=4",
                                    "evaluate.sanity_repeats=1", "search_cut_short=true", *_args(root, *TINY["lines"])], cwd=root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    sweeps = list((root / "outputs" / "visualize" / "multirun").iterdir())
    assert len(sweeps) == 1
    runs = sorted(p.name for p in sweeps[0].iterdir() if p.is_dir())
    assert runs == ["0_activations_lines", "1_gradcam_lines", "2_evaluate_lines"]
    index = (sweeps[0] / "index.html").read_text()
    for run in runs:
        assert (sweeps[0] / run / "index.html").is_file() and (sweeps[0] / run / "visualization.h5").is_file()
        assert f'href="{run}/index.html"' in index
    # the evaluate run's scores are joined at the sweep level
    assert "Measured explanations across runs" in index
    with open(sweeps[0] / "evaluation.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 * 4 and {r["run"] for r in rows} == {"2_evaluate_lines"}
    assert {(r["method"], r["head"]) for r in rows} == {(m, h) for m in ("gradcam", "saliency")
                                                        for h in ("length", "width", "angle", "colour")}
    assert all(r["model"] == "multihead" and r["dataset"] == "lines" and r["pointing_game"] for r in rows)


def test_ddp_with_two_cpu_processes(tmp_path):
    proc = run_cli("train.py", _args(tmp_path, *TINY_LINES, "trainer=ddp", "model=cnn_basic"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = list((tmp_path / "outputs" / "train").rglob("run.json"))
    assert len(records) == 1  # both processes share one run directory
    rec = json.loads(records[0].read_text())
    assert rec["status"] == "complete" and rec["test_accuracy"] is not None
    metrics = json.loads((records[0].parent / "test_metrics.json").read_text())
    assert metrics["test_images"] == 230  # 40% of 96 x 6, split evenly over the 2 processes (115 each)
    rows = (records[0].parent / "confusion" / "class.csv").read_text().strip().splitlines()[1:]
    assert sum(int(v) for r in rows for v in r.split(",")[1:]) == 230  # gathered from both processes, once each


@pytest.mark.parametrize("script,args,code,needle", [
    ("train.py", ["dataset=imagenet"], 2, "Available options in 'dataset':"),
    ("train.py", ["model=resnet"], 2, "Available options in 'model':"),
    ("train.py", ["trainer=tpu"], 2, "Available options in 'trainer':"),
    ("train.py", ["data.batch_size=abc"], 2, "Value 'abc' of type 'str' could not be converted to Integer"),
    ("train.py", ["data.per_clas=5"], 2, "Key 'per_clas' not in 'LinesDataSchema'"),
    ("train.py", ["data.batch_size=-5"], 2, "data.batch_size=-5 is invalid: it must be a positive integer"),
    ("train.py", ["trainer.max_epochs=0"], 2, "trainer.max_epochs=0 is invalid"),
    ("train.py", ["model=multihead", "dataset=mnist", "data.data_dir=/nonexistent"], 2, "only trains on dataset=lines"),
    ("visualize.py", ["job=dream"], 2, "Available options in 'job':"),
    ("visualize.py", ["job=gradcam", "dataset=lines"], 2, "Train one first:  python train.py dataset=lines"),
])
def test_bad_input_exits_with_a_clear_message_and_no_output(tmp_path, script, args, code, needle):
    base = TINY_LINES if script == "train.py" and not any(a.startswith("dataset=") for a in args) else QUIET_TRAINER
    proc = run_cli(script, _args(tmp_path, *(base if script == "train.py" else []), *args), cwd=tmp_path)
    assert proc.returncode == code, proc.stderr[-2000:]
    assert needle in proc.stderr
    assert "Traceback" not in proc.stderr
    outputs = tmp_path / "outputs"
    leftovers = [p for p in outputs.rglob("*") if p.is_file() and "cache" not in p.parts] if outputs.exists() else []
    assert leftovers == []


def test_missing_mnist_files_say_where_to_put_them(tmp_path):
    proc = run_cli("train.py", _args(tmp_path, "dataset=mnist", "model=cnn_basic", f"data.data_dir={tmp_path / 'x'}",
                                     "data.download=false"), cwd=tmp_path)
    assert proc.returncode == 2
    assert "data_dir" in proc.stderr and "CNNVIS_DATA_DIR" in proc.stderr
    assert not list((tmp_path / "outputs").rglob("*.ckpt")) if (tmp_path / "outputs").exists() else True


def test_help_lists_groups_and_examples(tmp_path):
    for script, group in [("train.py", "model: cnn_basic, cnn_deep, custom, multihead"),
                          ("visualize.py", "job: activations, all, attribution, evaluate, filters, gradcam")]:
        proc = run_cli(script, ["--help"], cwd=tmp_path)
        assert proc.returncode == 0 and group in proc.stdout and "Examples:" in proc.stdout


def _help_groups(stdout: str) -> set[str]:
    block = stdout.split("== Config groups of this script (group=option) ==")[1].split("== Config ==")[0]
    return {line.split(":")[0] for line in block.splitlines() if ":" in line}


def test_help_lists_only_the_scripts_own_groups_without_internal_options(tmp_path):
    expected = {"train.py": {"callbacks", "dataset", "debug", "hparams_search", "logger", "model", "paths",
                             "render", "trainer"},
                "visualize.py": {"dataset", "job", "methods", "model", "paths", "render"},
                "eval.py": {"dataset", "paths", "render"}}
    for script, groups in expected.items():
        proc = run_cli(script, ["--help"], cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert _help_groups(proc.stdout) == groups, proc.stdout[:3000]
        assert "base_" not in proc.stdout.split("== Config ==")[0]
        assert "dataset: fashion_mnist, image_folder, lines, lines_folder, mnist\n" in proc.stdout
        assert "render: default" in proc.stdout
