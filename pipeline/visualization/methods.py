"""Registry of the attribution methods, by the name a config or the CLI uses.

All share Grad-CAM's call shape: ``make_method(name, model, layer)(x, targets)`` returns a
:class:`~pipeline.visualization.gradcam.CAMResult` (or ``{head: CAMResult}`` for a
multi-head model). The CAMs and Guided Grad-CAM work at a layer (:func:`needs_layer`); the
pure gradient methods attribute to the input pixels and take no layer.
"""
from __future__ import annotations

from omegaconf import DictConfig, OmegaConf
from torch import nn

from pipeline.visualization.cams import GradCAMPlusPlus, HiResCAM, LayerCAM, ScoreCAM
from pipeline.visualization.gradcam import GradCAM
from pipeline.visualization.gradients import GuidedGradCAM, IntegratedGradients, Saliency, SmoothGrad
from pipeline.visualization.layers import last_conv_name

__all__ = ["METHODS", "needs_layer", "make_method", "method_params"]

METHODS = {
    "gradcam": GradCAM,
    "gradcam++": GradCAMPlusPlus,
    "scorecam": ScoreCAM,
    "layercam": LayerCAM,
    "hirescam": HiResCAM,
    "saliency": Saliency,
    "smoothgrad": SmoothGrad,
    "integrated_gradients": IntegratedGradients,
    "guided_gradcam": GuidedGradCAM,
}


def _lookup(name: str):
    key = str(name).strip().lower()
    if key not in METHODS:
        raise ValueError(f"unknown attribution method {name!r}; valid methods: {', '.join(METHODS)}")
    return METHODS[key]


def needs_layer(name: str) -> bool:
    """Whether the method works at a layer (the CAMs, Guided Grad-CAM) rather than the input."""
    return bool(getattr(_lookup(name), "needs_layer", True))


def make_method(name: str, model: nn.Module, layer=None, heads=None, batch_size: int = 256, **params):
    """The method ``name`` for ``model``; ``params`` go to its constructor.

    For a layer method, ``layer=None`` means the model's last ``nn.Conv2d``; a pure gradient
    method ignores ``layer`` (it attributes to the input). Unknown names raise ``ValueError``
    listing the valid ones.
    """
    cls = _lookup(name)
    if getattr(cls, "needs_layer", True):
        return cls(model, last_conv_name(model) if layer is None else layer, heads=heads,
                   batch_size=batch_size, **params)
    return cls(model, None, heads=heads, batch_size=batch_size, **params)


def method_params(cfg: DictConfig, methods) -> dict[str, dict]:
    """Per-method settings from the config's ``method_params`` (empty for methods not listed)."""
    mp = cfg.get("method_params")
    mp = OmegaConf.to_container(mp, resolve=True) if mp is not None else {}
    return {m: dict(mp.get(m) or {}) for m in methods}
