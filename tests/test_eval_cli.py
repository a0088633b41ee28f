"""eval.py: a checkpoint tested on another dataset (the course's folders), metrics checked by hand, bad input."""
from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import hydra
import numpy as np
import pytest
import pytorch_lightning as pl
import torch

from pipeline.cli import run_job
from pipeline.data.datamodules import LinesDataModule
from pipeline.data.lines import export_jpegs, generate_lines
from pipeline.data.lines_labels import HEADS, class_names, decode_label
from pipeline.data.lines_folder import read_lines_folder
from pipeline.training.evaluate import run_evaluation
from pipeline.training.lit_module import LitClassifier
from tests.conftest import TINY, compose_cfg, run_cli

PER_CLASS = 3


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    """A tiny exported lines folder, a briefly trained multihead lines checkpoint and an
    (untrained) cnn_basic mnist checkpoint."""
    base = tmp_path_factory.mktemp("eval_assets")
    folder = base / "classes"
    export_jpegs(generate_lines(per_class=PER_CLASS, style="course", seed=5, progress=False), folder)

    cfg = compose_cfg(base / "c1", [*TINY["lines"], "model=multihead"])
    module = hydra.utils.instantiate(cfg.model, class_names=class_names(), dataset="lines")
    dm = LinesDataModule(per_class=3, style="sheet", progress=False, batch_size=32)
    trainer = pl.Trainer(accelerator="cpu", max_steps=6, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0)
    trainer.fit(module, datamodule=dm)
    lines_ckpt = base / "multihead_lines.ckpt"
    trainer.save_checkpoint(lines_ckpt)

    from pipeline.data.idx_specs import SPECS
    cfg = compose_cfg(base / "c2", [*TINY["mnist"], "model=cnn_basic"])
    mnist = hydra.utils.instantiate(cfg.model, class_names=list(SPECS["mnist"].classes), dataset="mnist")
    mnist_ckpt = base / "cnn_basic_mnist.ckpt"
    torch.save({"state_dict": mnist.state_dict(), "hyper_parameters": dict(mnist.hparams),
                "pytorch-lightning_version": pl.__version__}, mnist_ckpt)
    return {"folder": folder, "lines_ckpt": lines_ckpt, "mnist_ckpt": mnist_ckpt}


def _files(root: Path) -> list[Path]:
    out = root / "outputs"
    return [p for p in out.rglob("*") if p.is_file() and "cache" not in p.parts] if out.exists() else []


def _read_cm(path: Path) -> np.ndarray:
    with open(path) as f:
        rows = list(csv.reader(f))[1:]
    return np.array([[int(v) for v in r[1:]] for r in rows])


def test_eval_on_every_image_of_a_folder_matches_an_independent_computation(assets, tmp_path):
    proc = run_cli("eval.py", [f"paths.root_dir={tmp_path}", f"ckpt={assets['lines_ckpt']}", "dataset=lines_folder",
                               f"data.root={assets['folder']}", "data.test_fraction=1.0"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = list((tmp_path / "outputs" / "eval" / "lines_folder").iterdir())
    assert len(runs) == 1
    run = runs[0]
    metrics = json.loads((run / "test_metrics.json").read_text())
    n = 96 * PER_CLASS
    assert metrics["dataset"] == "lines_folder" and metrics["model"] == "multihead" and metrics["test_images"] == n
    assert metrics["checkpoint"] == str(assets["lines_ckpt"].resolve()) and metrics["trained_on"] == "lines"
    assert sorted(metrics["heads"]) == sorted([*HEADS, "aggregate"])
    assert metrics["accuracy"] == metrics["heads"]["aggregate"]["accuracy"]

    # the same images through the same network, by hand
    images = read_lines_folder(assets["folder"])
    module = LitClassifier.load_from_checkpoint(str(assets["lines_ckpt"]), map_location="cpu", weights_only=True).eval()
    with torch.no_grad():
        out = module.net(torch.from_numpy(images.images).float() / 255.0)
    truth = decode_label(images.labels)
    preds, right = {}, np.ones(n, dtype=bool)
    for head, k in HEADS.items():
        logits = out[head].numpy()
        preds[head] = (logits[:, 0] > 0).astype(int) if k == 2 and logits.shape[1] == 1 else logits.argmax(1)
        ok = preds[head] == truth[head]
        right &= ok
        assert metrics["heads"][head]["accuracy"] == pytest.approx(ok.mean(), abs=1e-6), head
        cm = np.zeros((k, k), dtype=int)
        np.add.at(cm, (truth[head], preds[head]), 1)
        assert np.array_equal(_read_cm(run / "confusion" / f"{head}.csv"), cm), head
        assert (run / "confusion" / f"{head}.png").is_file()
    assert metrics["heads"]["aggregate"]["accuracy"] == pytest.approx(right.mean(), abs=1e-6)
    assert _read_cm(run / "confusion" / "aggregate.csv").sum() == n
    report = (run / "index.html").read_text()  # the eval run's report shows every confusion matrix
    assert all(f'src="confusion/{h}.png"' in report for h in [*HEADS, "aggregate"])
    # the one-screen summary
    for needle in ("checkpoint tested on lines_folder", str(assets["lines_ckpt"].resolve()), f"images:     {n} (every image)",
                   "aggregate   accuracy", f"output dir: {run}"):
        assert needle in proc.stdout, needle


def test_eval_scores_only_the_test_split_by_default_and_generated_lines_too(assets, tmp_path):
    cfg = compose_cfg(tmp_path, [f"ckpt={assets['lines_ckpt']}", "dataset=lines_folder", f"data.root={assets['folder']}",
                                 "data.progress=false"], config_name="eval")
    summary = run_evaluation(cfg)
    assert summary["test_images"] == round(96 * PER_CLASS * 0.4)
    metrics = json.loads((Path(summary["run_dir"]) / "test_metrics.json").read_text())
    assert metrics["test_images"] == summary["test_images"] and metrics["test_fraction"] == 0.4

    cfg = compose_cfg(tmp_path, [f"ckpt={assets['lines_ckpt']}", "dataset=lines", "data.style=sheet",
                                 "data.per_class=5", "data.augment.enabled=false", "data.progress=false"],
                      config_name="eval")
    summary = run_evaluation(cfg)
    assert summary["dataset"] == "lines" and summary["test_images"] == 96 * 2
    assert (Path(summary["run_dir"]) / "confusion" / "angle.csv").is_file()


def test_train_on_a_folder_then_eval_on_generated_lines(assets, tmp_path):
    from pipeline.training.train import run_training
    from tests.conftest import QUIET_TRAINER

    cfg = compose_cfg(tmp_path, ["dataset=lines_folder", f"data.root={assets['folder']}", "data.progress=false",
                                 "data.batch_size=32", "model=multihead", *QUIET_TRAINER])
    summary = run_training(cfg)
    metrics = json.loads((Path(summary["run_dir"]) / "test_metrics.json").read_text())
    assert metrics["dataset"] == "lines_folder" and metrics["test_images"] == round(96 * PER_CLASS * 0.4)
    cfg = compose_cfg(tmp_path, [f"ckpt={summary['best_checkpoint']}", "dataset=lines", "data.per_class=3",
                                 "data.augment.enabled=false", "data.progress=false"], config_name="eval")
    result = run_evaluation(cfg)
    assert result["trained_on"] == "lines_folder" and set(result["test"]) == {*HEADS, "aggregate"}


def _run_failing(tmp_path, overrides, capsys) -> str:
    """run_job as eval.py runs it (Hydra has made the run dir with .hydra/): exit 2, nothing left."""
    cfg = compose_cfg(tmp_path, overrides, config_name="eval")
    run_dir = Path(cfg.hydra.runtime.output_dir)
    (run_dir / ".hydra").mkdir(parents=True)
    (run_dir / ".hydra" / "config.yaml").write_text("x: 1\n")
    with pytest.raises(SystemExit) as info:
        run_job(run_evaluation, cfg)
    assert info.value.code == 2
    assert not run_dir.exists()
    assert _files(tmp_path) == []
    return capsys.readouterr().err


def test_bad_checkpoints(assets, tmp_path, capsys):
    folder = ["dataset=lines_folder", f"data.root={assets['folder']}", "data.test_fraction=1.0"]
    err = _run_failing(tmp_path, folder, capsys)
    assert "ckpt is required: pass ckpt=PATH" in err
    err = _run_failing(tmp_path, [f"ckpt={tmp_path / 'none.ckpt'}", *folder], capsys)
    assert "none.ckpt: no such file" in err
    bogus = tmp_path / "bogus.ckpt"
    bogus.write_text("not a checkpoint")
    err = _run_failing(tmp_path, [f"ckpt={bogus}", *folder], capsys)
    assert "cannot load it as a cnnvis training checkpoint" in err and "bogus.ckpt" in err
    err = _run_failing(tmp_path, [f"ckpt={assets['mnist_ckpt']}", *folder], capsys)
    assert "(cnn_basic, trained on mnist) predicts 10 classes (0, 1, 2, ..., 9)" in err
    assert "dataset=lines_folder has 96 classes (0_0_0_0, 0_0_0_1, 0_0_1_0, ..., 1_1_11_1)" in err


def test_bad_folders(assets, tmp_path, capsys):
    folder = tmp_path / "classes"
    shutil.copytree(assets["folder"], folder)
    args = [f"ckpt={assets['lines_ckpt']}", "dataset=lines_folder", f"data.root={folder}", "data.test_fraction=1.0"]
    (folder / "0_0_0_0" / "0_0_0_0_x.jpg").write_bytes((folder / "0_0_0_0" / "0_0_0_0_0.jpg").read_bytes())
    (folder / "0_0_0_1" / "0_0_0_1_0.jpg").write_bytes(b"garbage")
    err = _run_failing(tmp_path, args, capsys)
    assert "2 problem(s)" in err and "0_0_0_0/0_0_0_0_x.jpg: file name does not parse" in err
    assert "0_0_0_1/0_0_0_1_0.jpg: cannot be read as an image" in err
    shutil.rmtree(folder)
    folder.mkdir()
    err = _run_failing(tmp_path, args, capsys)
    assert "holds no image files" in err
    err = _run_failing(tmp_path, [f"ckpt={assets['lines_ckpt']}", "dataset=lines_folder"], capsys)
    assert "data.root is required: pass data.root=DIR" in err


@pytest.mark.parametrize("script,args,needle", [
    ("eval.py", ["dataset=lines_folder", "data.root=."], "ckpt is required: pass ckpt=PATH"),
    ("eval.py", ["ckpt={mnist}", "dataset=lines_folder", "data.root={folder}"], "trained on mnist) predicts 10 classes"),
    ("train.py", ["dataset=lines_folder", "data.root={folder}", "data.test_fraction=1.0"],
     "data.test_fraction=1.0 leaves no images to train on: it is for testing a trained checkpoint on every image, "
     "with eval.py: python eval.py ckpt=PATH dataset=lines_folder"),
])
def test_cli_bad_input_exits_2_with_a_clear_message_and_no_output(assets, tmp_path, script, args, needle):
    args = [a.format(mnist=assets["mnist_ckpt"], folder=assets["folder"]) for a in args]
    proc = run_cli(script, [f"paths.root_dir={tmp_path}", *args], cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert needle in proc.stderr and "Traceback" not in proc.stderr
    assert _files(tmp_path) == []


def test_help(tmp_path):
    proc = run_cli("eval.py", ["--help"], cwd=tmp_path)
    assert proc.returncode == 0 and "Examples:" in proc.stdout and "dataset=lines_folder data.root=" in proc.stdout
    assert "ckpt= is required" in proc.stdout   # the config itself: eval.py --cfg job (tests/test_help_groups.py)
