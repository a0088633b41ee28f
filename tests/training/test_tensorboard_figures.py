"""logger=tensorboard: event files with the run's figures as image summaries -- the learning curves
and confusion matrices when training ends, a Grad-CAM sheet per head every epoch when asked."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from pipeline.errors import ConfigError
from pipeline.training.tensorboard_figures import TensorBoardFigures


def _images(run_dir: Path) -> EventAccumulator:
    acc = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"images": 0})
    acc.Reload()
    return acc


def test_tensorboard_gets_curves_confusion_and_a_gradcam_sheet_per_epoch(tiny_cfg):
    from pipeline.training.train import run_training

    summary = run_training(tiny_cfg("lines", "multihead", ["logger=tensorboard", "trainer.max_epochs=2",
                                                           "callbacks.tensorboard_figures.gradcam_every_n_epochs=1",
                                                           "callbacks.tensorboard_figures.num_images=4"]))
    run_dir = Path(summary["run_dir"])
    acc = _images(run_dir)
    tags = set(acc.Tags()["images"])
    heads = ("length", "width", "angle", "colour")
    assert {f"gradcam/{h}" for h in heads} <= tags
    assert {"curves/loss", "curves/accuracy", "confusion/aggregate", "confusion/angle"} <= tags
    for h in heads:   # one sheet per epoch, at the epoch's last step
        assert [e.step for e in acc.Images(f"gradcam/{h}")] == [3, 6]
    # the curves in TensorBoard are the run's own pictures, pixel for pixel
    event = acc.Images("curves/loss")[-1]
    shown = np.asarray(Image.open(io.BytesIO(event.encoded_image_string)).convert("RGB"))
    np.testing.assert_array_equal(shown, np.asarray(Image.open(run_dir / "curves" / "loss.png").convert("RGB")))
    assert event.step == summary["global_step"]
    sheet = Image.open(io.BytesIO(acc.Images("gradcam/angle")[0].encoded_image_string))
    assert sheet.width > 200 and sheet.height > 200
    assert acc.Tags()["scalars"]   # the metrics still go there


def test_without_the_option_no_gradcam_and_csv_runs_get_no_tensorboard(tiny_cfg):
    from pipeline.training.train import run_training

    run_dir = Path(run_training(tiny_cfg("lines", "multihead", ["logger=tensorboard"]))["run_dir"])
    tags = set(_images(run_dir).Tags()["images"])
    assert "curves/loss" in tags and not any(t.startswith("gradcam/") for t in tags)
    plain = Path(run_training(tiny_cfg("lines", "multihead", []))["run_dir"])
    assert not (plain / "tensorboard").exists()


@pytest.mark.parametrize("kwargs, needle", [({"gradcam_every_n_epochs": -1}, "gradcam_every_n_epochs=-1"),
                                            ({"num_images": 0}, "num_images=0")])
def test_bad_settings(kwargs, needle):
    with pytest.raises(ConfigError, match=needle):
        TensorBoardFigures(**kwargs)
