"""HDF5 store of one visualize run: one file per run, written atomically.

:class:`~pipeline.storage.h5_writer.H5RunWriter` writes it, :class:`~pipeline.storage.h5_reader.H5Run`
reads it back: every group below has one writer method and one reader method.

File layout (all arrays C-ordered, images and activations channels-first)::

    /inputs                         float32 [N,C,H,W]  images as fed to the model, in [0,1]
    /labels                         int64   [N]        true label, -1 when unknown (a user image)
    /sources                        str     [N]        where each image came from ("test[42]", a path)
    /predictions/<head>             int64   [N]        predicted class per head ("class" for
    /probabilities/<head>           float32 [N,K]      single-output models; K=1 for sigmoid heads)
    /masks                          bool    [N,H,W]    ground-truth line masks (lines only)
                                    -- write_inputs, write_masks / inputs()
    /activations/<layer>            float32 [N,C,H,W]  (or [N,F] for a linear layer); one image per
                                                       chunk (1,C,H,W), gzip level 4 + shuffle;
                                    attrs: layer, shape (per image), sparsity (fraction of exact
                                    zeros), mean, plus any stats given by the caller
                                    -- write_activations / activations(), activation_stats()
    /filters/<layer>/patterns       float32 [F,C,H,W]  input pattern maximizing each filter's mean response
    /filters/<layer>/scores         float32 [F]        response reached by each pattern
    /filters/<layer>/start_scores   float32 [F]        response of the blank starting image
    /filters/<layer>/filter_indices int64   [F]        filter (output channel) of each pattern
    /filters/<layer>/ranking        int64   [F]        rows of the arrays above ordered by score, best first
                                    attrs: steps, step_size, ... (the optimiser's settings)
                                    -- write_filters / filters()
    /attribution/<method>/<head>/<layer>/maps   float32 [N,H,W]  upsampled to the input size, raw scale
             .../maps_normalized    float32 [N,H,W]    per image min-max to [0,1] (zeros if the map is all zero)
             .../layer_maps         float32 [N,h,w]    at the layer's own resolution, raw scale
             .../targets            int64   [N]        class explained for each image
             .../probs              float32 [N]        the model's probability of that class
                                    layer "input" for the input-gradient methods; attrs: notes
                                    -- write_attribution / attribution()
    /evaluation/indices             int64   [M]        test images job=evaluate scored
    /evaluation/<method>/<head>/    maps (the first 64), targets, pointing_game, energy_in_mask,
                                    mask_share, topk_iou [M], deletion_curves, insertion_curves,
                                    sanity_spearman [steps, S]; attrs: sanity_layers, sanity_repeats
                                    -- write_evaluation_indices, write_evaluation / evaluation_indices(), evaluation()
    /probe/indices                  int64   [M]        test images the shortcut probe scored (job=probe);
                                    attrs: images, redrawn, style, differs_from_stored
    /probe/<factor>/levels          float64 [L]        the factor's levels (NaN for the baseline)
    /probe/<factor>/level_names     str     [L]        "x0.7", "sigma 1", "q50", "+1 px", "corner", ...
    /probe/<factor>/accuracy/<head> float64 [L]        accuracy of the head (and "aggregate") per level;
                                    attrs of /probe/<factor>: images, description
                                    -- write_probe_indices, write_probe / probe_indices(), probe()

    root attrs: dataset, model, checkpoint, created (ISO 8601 time), config (the run's resolved
                config as a YAML string), cnnvis_version, layer_shapes (JSON: layer -> per-image
                shape), json_attrs (JSON list of the attrs whose values are JSON-encoded)
                -- the writer's attrs= and set_attrs / attrs

Layer names are the model's module names and are kept verbatim as group/dataset names, dots
included ("features.conv1"); a name containing "/" is refused.  Groups keep insertion order, so
layers read back in the order they were written (the model's order).

Attribute values that HDF5 cannot hold natively (dicts, lists, None, ...) are stored as JSON
strings and their names listed in the ``json_attrs`` attribute of the same object;
:class:`H5Run` decodes them again.

The file is written to ``<name>.partial-<pid>@<host>`` in the target directory and moved onto the
target with ``os.replace`` only when the writer is closed without an exception, so a crashed run
never leaves a half-written file under the real name (nor does it clobber an older one).
"""
from __future__ import annotations

from pipeline.storage.h5_reader import H5Run
from pipeline.storage.h5_writer import H5RunWriter

__all__ = ["H5RunWriter", "H5Run"]
