"""Guided backpropagation and Guided Grad-CAM.

* :class:`GuidedBackprop` (Springenberg et al., 2015): the gradient with every ``nn.ReLU``'s
  backward clamped to positive gradients (:func:`~pipeline.attribution.input_gradient.guided_relus`),
  signed ``attributions``, ``maps = max_c |attributions|``;
* :class:`GuidedGradCAM` (Selvaraju et al., 2017), as Captum's ``GuidedGradCam``: guided
  backprop times the project's Grad-CAM upsampled to the input (``interpolate_mode``, default
  ``"bilinear"`` like Grad-CAM; Captum defaults to ``"nearest"``; either places each cell at its
  receptive field's centre unless ``placement="stretch"``), signed ``attributions =
  guided * cam`` broadcast over the input channels, ``maps = max_c |attributions|``. Two
  passes: Grad-CAM's own, then guided backprop for Grad-CAM's targets.
"""
from __future__ import annotations

from typing import Mapping

import torch

from pipeline.attribution.base import AttributionMethod
from pipeline.attribution.gradcam import GradCAM
from pipeline.attribution.result import AttributionResult, normalize_maps
from pipeline.attribution.saliency import Saliency
from pipeline.visualization.receptive_field import place_maps

__all__ = ["GuidedBackprop", "GuidedGradCAM"]


class GuidedBackprop(Saliency):
    """Guided backpropagation: the signed gradient through positive-gradient ReLUs."""

    method_name = "guided_backprop"
    guided = True
    zero_reason = "no positive gradient path from the target to the input"

    def __init__(self, model, target_layer=None, heads=None, batch_size: int = 256, **fast_paths):
        super().__init__(model, target_layer, heads=heads, batch_size=batch_size, abs=False, **fast_paths)


class GuidedGradCAM(AttributionMethod):
    """Guided backprop times the upsampled Grad-CAM at ``target_layer``."""

    method_name = "guided_gradcam"
    zero_reason = "Grad-CAM or guided backprop is zero everywhere"

    def __init__(self, model, target_layer, heads=None, batch_size: int = 256,
                 interpolate_mode: str = "bilinear", closed_form_backward: bool = True, **fast_paths):
        super().__init__(model, target_layer, heads=heads, batch_size=batch_size, **fast_paths)
        self.interpolate_mode = interpolate_mode
        self._gradcam = GradCAM(model, self.layer, heads=heads, batch_size=batch_size,
                                closed_form_backward=closed_form_backward, **fast_paths)
        self._guided = GuidedBackprop(model, None, heads=heads, batch_size=batch_size, **fast_paths)

    def close(self) -> None:
        super().close()
        self._gradcam.close()
        self._guided.close()

    def __call__(self, x, targets=None):
        x = self._images(x)
        with torch.inference_mode(False):
            cams = self._gradcam(x, targets)
            dict_model = isinstance(cams, Mapping)
            if not dict_model:
                cams = {cams.head: cams}
            guided = self._guided(x, {h: c.targets for h, c in cams.items()} if dict_model
                                  else next(iter(cams.values())).targets)
            if not dict_model:
                guided = {next(iter(cams)): guided}
            out = {h: self._combine(h, cam, guided[h], x) for h, cam in cams.items()}
        return out if dict_model else next(iter(out.values()))

    def _combine(self, head, cam, gb: AttributionResult, x) -> AttributionResult:
        size = tuple(x.shape[-2:])
        if self.interpolate_mode == "bilinear":
            up = cam.maps
        else:
            up = place_maps(cam.layer_maps, size, self._gradcam.geometry(x), self.interpolate_mode)
        attr = gb.attributions * up.unsqueeze(1)
        maps = attr.abs().amax(1)
        return AttributionResult(
            maps=maps, maps_normalized=normalize_maps(maps), layer_maps=cam.layer_maps, targets=cam.targets,
            scores=cam.scores, probs=cam.probs, all_zero=~(maps.flatten(1) > 0).any(1), weights=cam.weights,
            zero_grad=gb.zero_grad, layer=self.layer_name, head=head, binary=cam.binary, attributions=attr,
            method=self.method_name, zero_reason=self.zero_reason)
