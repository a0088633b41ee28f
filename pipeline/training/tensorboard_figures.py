"""The run's pictures in TensorBoard too (``logger=tensorboard``), for people who live there.

* :func:`log_training_figures`: after training, the learning curves (``curves/*.png``) and confusion
  matrices (``confusion/*.png``) that the run wrote, as image summaries ``curves/<name>`` and
  ``confusion/<name>`` -- the same pictures as the report;
* :class:`TensorBoardFigures` (``callbacks.tensorboard_figures``, added by conf/logger/tensorboard.yaml):
  with ``gradcam_every_n_epochs: N`` a Grad-CAM sheet of ``num_images`` validation images (spread over
  the classes) every N epochs, one per head, as ``gradcam/<head>`` at the epoch's global step.

Nothing happens without a TensorBoardLogger, or on a DDP rank other than 0.
"""
from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image
from pytorch_lightning.callbacks import Callback
from pytorch_lightning.loggers import TensorBoardLogger

from pipeline.errors import ConfigError

log = logging.getLogger(__name__)

FIGURE_FOLDERS = ("curves", "confusion")


def tensorboard_writer(trainer):
    """The SummaryWriter of the trainer's TensorBoardLogger, or None."""
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            return logger.experiment
    return None


def _add_png(writer, tag: str, path: Path, step: int) -> None:
    pixels = np.asarray(Image.open(path).convert("RGB"))
    writer.add_image(tag, pixels, step, dataformats="HWC")


def log_training_figures(trainer, run_dir: Path) -> list[str]:
    """Send the run's learning curves and confusion matrices to TensorBoard; returns the tags written."""
    writer = tensorboard_writer(trainer)
    if writer is None or not trainer.is_global_zero:
        return []
    tags = []
    for folder in FIGURE_FOLDERS:
        pngs = sorted((Path(run_dir) / folder).glob("*.png"))
        if not pngs and any((Path(run_dir) / folder).glob("*.svg")):
            log.warning("render.format=svg: %s/ has no png for TensorBoard (use png or pdf to see it there)", folder)
        for path in pngs:
            _add_png(writer, f"{folder}/{path.stem}", path, trainer.global_step)
            tags.append(f"{folder}/{path.stem}")
    writer.flush()
    return tags


class TensorBoardFigures(Callback):
    """A Grad-CAM sheet per head every ``gradcam_every_n_epochs`` epochs (0: never) in TensorBoard."""

    def __init__(self, gradcam_every_n_epochs: int = 0, num_images: int = 6, layer: str | None = None,
                 alpha: float = 0.5, cmap: str = "jet"):
        for key, value, low in (("gradcam_every_n_epochs", gradcam_every_n_epochs, 0), ("num_images", num_images, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(f"callbacks.tensorboard_figures.{key}={value!r} is invalid: an integer >= {low}")
        self.every, self.num_images, self.layer, self.alpha, self.cmap = gradcam_every_n_epochs, num_images, layer, alpha, cmap

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if not self.every or (trainer.current_epoch + 1) % self.every or not trainer.is_global_zero:
            return
        writer = tensorboard_writer(trainer)
        val = getattr(trainer.datamodule, "val", None) if trainer.datamodule is not None else None
        if writer is None or val is None or len(val.labels) == 0:
            return
        with tempfile.TemporaryDirectory(prefix="cnnvis-tb-") as folder:
            for head, path in self.gradcam_sheets(pl_module, trainer.datamodule, trainer.current_epoch,
                                                  Path(folder)).items():
                _add_png(writer, f"gradcam/{head}", path, trainer.global_step)
        writer.flush()

    def gradcam_sheets(self, pl_module, datamodule, epoch: int, folder: Path) -> dict[str, Path]:
        """``{head: png}`` in ``folder``: Grad-CAM of each image's predicted class, the tiles titled
        with the true class, the prediction and its probability."""
        from pipeline.attribution.gradcam import GradCAM
        from pipeline.data.batches import to_float_images
        from pipeline.data.lines_labels import head_class_names, split_label
        from pipeline.rendering.figures import render_gradcam_sheet
        from pipeline.rendering.output import png_rendering
        from pipeline.visualization.inputs import spread_indices
        from pipeline.visualization.layers import last_conv_name

        val, net = datamodule.val, pl_module.net
        idx = spread_indices(val.labels, min(self.num_images, len(val.labels)), datamodule.num_classes)
        x = to_float_images(val.images[idx]).to(pl_module.device)
        labels = val.labels[idx]
        heads = dict(pl_module.head_classes)
        multihead = len(heads) > 1
        true = split_label(labels, heads) if multihead else {"class": labels}
        layer = self.layer or last_conv_name(net)
        was_training = net.training
        net.eval()
        try:
            res = GradCAM(net, layer, heads=list(heads) if multihead else None)(x)
        finally:
            net.train(was_training)
        res = res if isinstance(res, dict) else {"class": res}
        out = {}
        with png_rendering():
            for head, r in res.items():
                names = head_class_names(head, heads[head], list(datamodule.class_names))
                titles = [f"true {names[int(t)]}\npred {names[int(p)]} (p={float(q):.2f})"
                          for t, p, q in zip(true[head], r.targets, r.probs)]
                out[head] = render_gradcam_sheet(x.cpu(), r.maps_normalized, titles, folder / f"{head}.png",
                                                 alpha=self.alpha, cmap=self.cmap,
                                                 title=f"Grad-CAM at {layer}, head {head}, epoch {epoch + 1}")
        return out
