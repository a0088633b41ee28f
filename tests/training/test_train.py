"""The train job end to end on tiny configs: artefacts, checkpoints, metrics, bad input, resume."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pipeline.errors import ConfigError, NoCheckpointError
from pipeline.training.lit_module import LitClassifier
from pipeline.training.registry import find_latest_run
from pipeline.training.train import build, run_training

PAIRS = [("lines", "multihead"), ("lines", "cnn_basic"), ("lines", "cnn_deep"),
         ("mnist", "cnn_basic"), ("mnist", "cnn_deep"), ("fashion_mnist", "cnn_basic")]


@pytest.mark.parametrize("dataset,model", PAIRS)
def test_each_model_trains_and_writes_its_artefacts(tiny_cfg, tmp_path, dataset, model):
    cfg = tiny_cfg(dataset, model)
    summary = run_training(cfg)
    run_dir = Path(summary["run_dir"])
    assert summary["status"] == "complete" and summary["global_step"] == 3
    for rel in ["config.yaml", "checkpoints/best.ckpt", "checkpoints/last.ckpt", "metrics.csv",
                "curves/loss.png", "curves/accuracy.png", "curves/f1.png", "test_metrics.json", "model_summary.txt",
                "run.json", "index.html"]:
        assert (run_dir / rel).is_file(), rel
    metrics = json.loads((run_dir / "test_metrics.json").read_text())
    heads = ["length", "width", "angle", "colour", "aggregate"] if model == "multihead" else ["class"]
    assert sorted(metrics["heads"]) == sorted(heads)
    for h in heads:
        assert 0.0 <= metrics["heads"][h]["accuracy"] <= 1.0 and 0.0 <= metrics["heads"][h]["f1_macro"] <= 1.0
        Image.open(run_dir / "confusion" / f"{h}.png").verify()
        rows = (run_dir / "confusion" / f"{h}.csv").read_text().strip().splitlines()
        n = {"class": 96 if dataset == "lines" else 10, "aggregate": 96, "angle": 12}.get(h, 2)
        assert len(rows) == n + 1
        # the CSV's counts add up to the number of test images
        assert sum(int(v) for r in rows[1:] for v in r.split(",")[1:]) == metrics["test_images"]
    report = (run_dir / "index.html").read_text()  # the training report shows every training figure
    for rel in ["curves/loss.png", "curves/accuracy.png", "curves/f1.png", *[f"confusion/{h}.png" for h in heads]]:
        assert f'src="{rel}"' in report, rel
    summary_txt = (run_dir / "model_summary.txt").read_text()
    assert "features.conv1" in summary_txt
    assert json.loads((run_dir / "run.json").read_text())["status"] == "complete"
    # the visualizer finds this run without being told the path
    found = find_latest_run(Path(cfg.paths.outputs_dir), dataset, model, include_cut_short=True)
    assert found.best_checkpoint == Path(summary["best_checkpoint"])
    if (dataset, model) == ("lines", "multihead"):
        _check_visualize_report_reuses_the_training_figures(run_dir, tmp_path, model, dataset)


def _check_visualize_report_reuses_the_training_figures(run_dir: Path, tmp_path: Path, model: str, dataset: str):
    """The run's figures carry their stamp (pipeline/rendering/stamps.py), so the visualize report
    copies them; a redraw (stamps removed) gives the same pictures."""
    from pipeline.rendering.stamps import STAMP_NAME, reusable_figures
    from pipeline.report.train_report import redrawn_training_figures

    assert reusable_figures(run_dir / "curves", [run_dir / "metrics.csv"]) is not None
    copied = redrawn_training_figures(run_dir, tmp_path / "copied", model=model, dataset=dataset)
    for folder in ("curves", "confusion"):
        (run_dir / folder / STAMP_NAME).unlink()
    redrawn = redrawn_training_figures(run_dir, tmp_path / "redrawn", model=model, dataset=dataset)
    assert [f.path.relative_to(tmp_path / "copied") for f in copied] == \
        [f.path.relative_to(tmp_path / "redrawn") for f in redrawn]
    assert len(copied) == 3 + 5
    for a, b in zip(copied, redrawn):
        assert a.path.read_bytes() == (run_dir / a.path.relative_to(tmp_path / "copied")).read_bytes()
        assert np.array_equal(np.asarray(Image.open(a.path)), np.asarray(Image.open(b.path))), a.path.name


def test_checkpoint_reload_gives_identical_predictions(tiny_cfg):
    cfg = tiny_cfg("lines", "multihead")
    summary = run_training(cfg)
    datamodule, module, _ = build(cfg)
    datamodule.setup("test")
    x = datamodule.test.images[:32].float() / 255
    a = LitClassifier.load_from_checkpoint(summary["best_checkpoint"], map_location="cpu").eval()
    b = LitClassifier.load_from_checkpoint(summary["best_checkpoint"], map_location="cpu").eval()
    state = torch.load(summary["best_checkpoint"], map_location="cpu", weights_only=False)["state_dict"]
    module.load_state_dict(state)
    module.eval()
    with torch.no_grad():
        out_a, out_b, out_m = a(x), b(x), module(x)
    for h in out_a:
        assert torch.equal(out_a[h], out_b[h]) and torch.equal(out_a[h], out_m[h])
    assert a.hparams.name == "multihead" and len(a.hparams.class_names) == 96


@pytest.mark.parametrize("model,extra", [
    ("cnn_basic", ["trainer.deterministic=true"]),
    ("multihead", []),   # the demo's settings as they are: channels_last on, deterministic off
])
def test_seed_makes_training_reproducible(tiny_cfg, model, extra):
    s1 = run_training(tiny_cfg("lines", model, extra))
    s2 = run_training(tiny_cfg("lines", model, extra))
    w1 = torch.load(s1["last_checkpoint"], weights_only=False)["state_dict"]
    w2 = torch.load(s2["last_checkpoint"], weights_only=False)["state_dict"]
    assert all(torch.equal(w1[k], w2[k]) for k in w1)


@pytest.mark.parametrize("override,needle", [
    ("data.batch_size=-5", "data.batch_size=-5 is invalid"),
    ("trainer.max_epochs=0", "trainer.max_epochs=0 is invalid"),
    ("model.optimizer.lr=-1", "model.optimizer.lr=-1 is invalid"),
])
def test_bad_override_values_fail_before_any_work(tiny_cfg, tmp_path, override, needle):
    cfg = tiny_cfg("lines", "multihead", [override])
    with pytest.raises(ConfigError, match=needle.replace(".", r"\.")):
        run_training(cfg)
    assert not (tmp_path / "outputs").exists() and not (tmp_path / "cache").exists()


def test_multihead_on_mnist_is_refused_with_a_suggestion(tiny_cfg, tmp_path):
    cfg = tiny_cfg("mnist", "multihead")
    with pytest.raises(ConfigError, match="only trains on dataset=lines.*model=cnn_basic"):
        run_training(cfg)
    assert not (tmp_path / "outputs").exists()


def test_missing_dataset_files_name_where_to_put_them(tiny_cfg, tmp_path):
    cfg = tiny_cfg("mnist", "cnn_basic", [f"data.data_dir={tmp_path / 'nowhere'}", "data.download=false"])
    with pytest.raises(FileNotFoundError, match="data_dir"):
        run_training(cfg)
    assert not list((tmp_path / "outputs").rglob("*.ckpt")) if (tmp_path / "outputs").exists() else True


class _Interrupt:
    """A callback that presses Ctrl-C in the middle of the second epoch."""

    def __new__(cls):
        import pytorch_lightning as pl

        class Interrupt(pl.Callback):
            def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
                if trainer.current_epoch == 1 and batch_idx == 1:
                    raise KeyboardInterrupt
        return Interrupt()


def test_interrupted_run_resumes_from_its_checkpoint(tiny_cfg, monkeypatch):
    import pipeline.training.train as train_mod

    real = train_mod._instantiate_all
    monkeypatch.setattr(train_mod, "_instantiate_all",
                        lambda group: real(group) + ([_Interrupt()] if group is not None and "model_checkpoint" in group else []))
    cfg = tiny_cfg("lines", "cnn_basic", ["trainer.max_epochs=3"])
    with pytest.raises(KeyboardInterrupt):  # Ctrl-C stays Ctrl-C (exit 130), not Lightning's SystemExit(1)
        run_training(cfg)
    run_dir = Path(cfg.paths.output_dir)
    assert json.loads((run_dir / "run.json").read_text())["status"] == "interrupted"
    assert (run_dir / "checkpoints" / "interrupted.ckpt").is_file()
    with pytest.raises(NoCheckpointError):  # an interrupted run is never offered to the visualizer
        find_latest_run(Path(cfg.paths.outputs_dir), "lines", "cnn_basic")
    monkeypatch.setattr(train_mod, "_instantiate_all", real)
    resumed = run_training(tiny_cfg("lines", "cnn_basic", ["trainer.max_epochs=3", "resume=latest"]))
    assert resumed["status"] == "complete"
    # 3 steps in epoch 0, 1 in epoch 1 before the interrupt; the resumed run finishes epochs 1 and 2
    ckpt = torch.load(resumed["last_checkpoint"], weights_only=False)
    assert ckpt["epoch"] == 2 and ckpt["global_step"] >= 3 + 3 + 1


def test_resume_from_a_missing_file_is_an_error(tiny_cfg, tmp_path):
    with pytest.raises(NoCheckpointError, match="no such checkpoint"):
        run_training(tiny_cfg("lines", "cnn_basic", [f"resume={tmp_path / 'missing.ckpt'}"]))


def _recount(pred: np.ndarray, true: np.ndarray, k: int):
    """Accuracy, macro F1 (classes absent from both truth and prediction skipped, as
    torchmetrics does) and the confusion matrix, counted by hand."""
    cm = np.zeros((k, k), dtype=np.int64)
    np.add.at(cm, (true, pred), 1)
    f1s = []
    for c in range(k):
        tp, fp, fn = cm[c, c], cm[:, c].sum() - cm[c, c], cm[c, :].sum() - cm[c, c]
        if tp + fp + fn:
            f1s.append(2 * tp / (2 * tp + fp + fn))
    return float((pred == true).mean()), float(np.mean(f1s)), cm


def test_stored_test_metrics_equal_a_recount_from_the_best_checkpoint(tiny_cfg):
    """Oracle for the glue between trainer.test and test_metrics.json / confusion/*.csv: the
    best checkpoint's predictions on the test split, recounted with numpy, with the mixed-radix
    label decoded by hand (length, width, angle, colour = 2, 2, 12, 2 classes)."""
    cfg = tiny_cfg("lines", "multihead", ["trainer.limit_train_batches=6"])
    summary = run_training(cfg)
    run_dir = Path(summary["run_dir"])
    datamodule, _, _ = build(cfg)
    datamodule.setup("test")
    model = LitClassifier.load_from_checkpoint(summary["best_checkpoint"], map_location="cpu").eval()
    with torch.no_grad():
        out = model(datamodule.test.images.float() / 255)
    labels = datamodule.test.labels.numpy()
    truth = {"length": labels // 48, "width": labels // 24 % 2, "angle": labels // 2 % 12, "colour": labels % 2,
             "aggregate": labels}
    preds = {h: out[h].argmax(1).numpy() if out[h].shape[1] > 1 else (out[h][:, 0] > 0).long().numpy()
             for h in ["length", "width", "angle", "colour"]}
    preds["aggregate"] = ((preds["length"] * 2 + preds["width"]) * 12 + preds["angle"]) * 2 + preds["colour"]
    metrics = json.loads((run_dir / "test_metrics.json").read_text())
    assert metrics["test_images"] == len(labels)
    for h, k in {"length": 2, "width": 2, "angle": 12, "colour": 2, "aggregate": 96}.items():
        acc, f1, cm = _recount(preds[h], truth[h], k)
        assert metrics["heads"][h]["accuracy"] == pytest.approx(acc, abs=1e-6), h
        assert metrics["heads"][h]["f1_macro"] == pytest.approx(f1, abs=1e-6), h
        rows = [r.split(",") for r in (run_dir / "confusion" / f"{h}.csv").read_text().strip().splitlines()[1:]]
        assert np.array_equal(np.array([[int(v) for v in r[1:]] for r in rows]), cm), h
