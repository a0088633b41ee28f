"""Attribution methods: one hierarchy, one call shape, ``Method(model, target_layer)(x, targets)``.

* :mod:`~pipeline.attribution.base`: :class:`AttributionMethod`, everything shared (checks,
  batching, heads, hooks, grad modes, the fast paths);
* :mod:`~pipeline.attribution.gradient_cam`: the CAMs from a layer's activation and gradient;
  a subclass supplies only its weights: :mod:`~pipeline.attribution.gradcam` (Grad-CAM),
  :mod:`~pipeline.attribution.gradcam_plus_plus`, :mod:`~pipeline.attribution.layercam`,
  :mod:`~pipeline.attribution.hirescam`; :mod:`~pipeline.attribution.scorecam` needs no gradient;
* :mod:`~pipeline.attribution.input_gradient`: attributions to the input pixels:
  :mod:`~pipeline.attribution.saliency`, :mod:`~pipeline.attribution.smoothgrad`,
  :mod:`~pipeline.attribution.integrated_gradients`, :mod:`~pipeline.attribution.guided`;
* :mod:`~pipeline.attribution.targets`: what is explained (callable targets);
  :mod:`~pipeline.attribution.result`: what comes back.

The methods the jobs use are config nodes, one file each in ``conf/methods/`` (``_target_`` +
``_partial_: true`` + settings), built with ``hydra.utils.instantiate``: adding a method is one
class in one file plus one config file (see the README).
"""
