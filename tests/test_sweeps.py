"""Sweeps as a user runs them, on Hydra's launchers: every combination runs even when one fails,
the failed ones are listed with their error in the sweep index, the sweep exits non-zero, and the
index is the same whichever launcher ran it (basic, joblib with 2 jobs, submitit_local). Plus the
Optuna example search (hparams_search=lines_optuna)."""
from __future__ import annotations

import json
from pathlib import Path

import h5py
import pytest
from omegaconf import OmegaConf

from tests.conftest import QUIET_TRAINER, TINY, run_cli

# multihead on mnist is bad input (job 0 fails at once); cnn_basic trains a few steps (job 1)
TRAIN_SWEEP = ["-m", "model=multihead,cnn_basic", *TINY["mnist"], *QUIET_TRAINER]
SAME = ("run", "status", "dataset", "model", "job", "error")


def _train_sweep(root: Path, *launcher: str):
    proc = run_cli("train.py", [*TRAIN_SWEEP, f"paths.root_dir={root}", *launcher], cwd=root)
    sweeps = sorted((root / "outputs" / "train" / "multirun").iterdir())
    assert len(sweeps) == 1, proc.stderr[-3000:]
    return proc, sweeps[0]


def _index(sweep_dir: Path) -> list[dict]:
    """The launcher-independent part of the sweep index (accuracies depend on thread counts)."""
    runs = json.loads((sweep_dir / "sweep.json").read_text())["runs"]
    return [{k: r.get(k) for k in SAME} for r in runs]


@pytest.fixture(scope="module")
def basic_sweep(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep_basic")
    proc, sweep = _train_sweep(root)
    return root, proc, sweep


def test_a_failing_combination_does_not_stop_a_training_sweep(basic_sweep):
    root, proc, sweep = basic_sweep
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    assert "error: 1 of 2 runs of this sweep failed (0_mnist_multihead: model=multihead has one head" in proc.stderr
    index = _index(sweep)
    assert [(r["run"], r["status"]) for r in index] == [("0_mnist_multihead", "failed"), ("1_mnist_cnn_basic", "complete")]
    assert "only trains on dataset=lines" in index[0]["error"] and index[1]["error"] is None
    failure = json.loads((sweep / "0_mnist_multihead" / "error.json").read_text())
    assert failure["exit_code"] == 2 and "model=multihead" in failure["overrides"]
    assert (sweep / "0_mnist_multihead" / ".hydra" / "overrides.yaml").is_file()  # the failed run's folder is kept
    record = json.loads((sweep / "1_mnist_cnn_basic" / "run.json").read_text())
    assert record["status"] == "complete" and Path(record["best_checkpoint"]).is_file()
    html = (sweep / "index.html").read_text()
    assert "failed" in html and "only trains on dataset=lines" in html and 'href="1_mnist_cnn_basic/' in html


@pytest.mark.parametrize("launcher", [["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"],
                                      ["hydra/launcher=submitit_local"]], ids=["joblib", "submitit_local"])
def test_parallel_launchers_give_the_same_sweep_index(basic_sweep, tmp_path, launcher):
    proc, sweep = _train_sweep(tmp_path, *launcher)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr and "1 of 2 runs of this sweep failed" in proc.stderr
    assert _index(sweep) == _index(basic_sweep[2])
    assert (sweep / "index.html").is_file()
    job_log = (sweep / "1_mnist_cnn_basic" / "train.log").read_text()
    if "joblib" in launcher[0]:
        assert "Joblib.Parallel(n_jobs=2" in proc.stdout
        assert "torch threads: 1 (of" in job_log or "torch threads: 1 (of" in proc.stdout  # 2 jobs x 1 thread
    else:
        assert (sweep / ".submitit").is_dir()  # the jobs ran through submitit, in processes of their own
        pids = {json.loads((sweep / "0_mnist_multihead" / "error.json").read_text())["pid"],
                json.loads((sweep / "1_mnist_cnn_basic" / "run.json").read_text())["pid"]}
        assert len(pids) == 2


def test_a_failing_visualize_combination_does_not_stop_the_sweep(basic_sweep):
    root, _, _ = basic_sweep  # its cnn_basic run is the newest mnist checkpoint under root
    proc = run_cli("visualize.py", ["-m", "job=gradcam", "gradcam.target=3,42,5", "model=cnn_basic", "image=[0,1]", "search_cut_short=true",
                                    *TINY["mnist"], f"paths.root_dir={root}"], cwd=root)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    sweep = next((root / "outputs" / "visualize" / "multirun").iterdir())
    index = _index(sweep)
    assert [(r["run"], r["status"]) for r in index] == [
        ("0_gradcam_mnist", "complete"), ("1_gradcam_mnist", "failed"), ("2_gradcam_mnist", "complete")]
    assert "gradcam.target=42 is out of range" in index[1]["error"]
    with h5py.File(sweep / "2_gradcam_mnist" / "visualization.h5") as f:  # the combination after the failure ran
        targets = []
        f.visititems(lambda name, obj: targets.append(obj[()].tolist())
                     if "gradcam" in name and name.endswith("/targets") else None)
    assert targets == [[5, 5]]
    assert "gradcam.target=42 is out of range" in (sweep / "index.html").read_text()


def test_optuna_example_search_tunes_lr_and_width(tmp_path):
    proc = run_cli("train.py", ["hparams_search=lines_optuna", "hydra.sweeper.n_trials=1", *TINY["lines"],
                                *QUIET_TRAINER, f"paths.root_dir={tmp_path}"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    sweep = next((tmp_path / "outputs" / "train" / "multirun").iterdir())
    best = OmegaConf.to_container(OmegaConf.load(sweep / "optimization_results.yaml"))
    assert set(best["best_params"]) == {"model.optimizer.lr", "model.net.channels.2"}
    assert 0.0003 <= best["best_params"]["model.optimizer.lr"] <= 0.02
    trial = OmegaConf.load(sweep / "0_lines_multihead" / "config.yaml")
    assert trial["model"]["net"]["channels"][2] == best["best_params"]["model.net.channels.2"]
    record = json.loads((sweep / "0_lines_multihead" / "run.json").read_text())
    assert best["best_value"] == pytest.approx(record["best_val_acc"])  # the objective: best validation accuracy
    assert [r["status"] for r in json.loads((sweep / "sweep.json").read_text())["runs"]] == ["complete"]
