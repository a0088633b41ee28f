"""The write side of the HDF5 run store: :class:`H5RunWriter` (the layout: :mod:`pipeline.storage.h5store`).

The file is written to ``<name>.partial-<pid>@<host>`` next to the target and moved onto it
with ``os.replace`` only when the writer is closed without an exception.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
from pathlib import Path
from typing import Any, Mapping

import h5py
import numpy as np

from pipeline.leftovers import partial_path
from pipeline.storage.h5_attrs import (COMPRESSION, check_name, cnnvis_version, group, replace_dataset, to_numpy,
                                       write_attrs)

__all__ = ["H5RunWriter"]

class H5RunWriter:
    """Write one visualize run to ``path`` (see the module docstring for the layout).

    Use as a context manager; the file appears at ``path`` only when the ``with`` block ends
    without an exception. ``close()`` / ``abort()`` do the same by hand.
    """

    def __init__(self, path: str | os.PathLike, attrs: Mapping[str, Any] | None = None,
                 overwrite: bool = False):
        self.path = Path(path)
        self.overwrite = bool(overwrite)
        if self.path.exists() and not self.overwrite:
            raise FileExistsError(
                f"{self.path} already exists; refusing to overwrite it "
                f"(pass overwrite=True, or choose another output path)")
        if self.path.is_dir():
            raise IsADirectoryError(f"{self.path} is a directory, not an HDF5 file path")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp_path = partial_path(self.path)  # <name>.partial-<pid>@<host>: removable once its writer is gone
        self._file: h5py.File | None = h5py.File(self.tmp_path, "w", track_order=True)
        self._layer_shapes: dict[str, list[int]] = {}
        self._file.attrs["created"] = _dt.datetime.now().astimezone().isoformat(timespec="seconds")
        self._file.attrs["cnnvis_version"] = cnnvis_version()
        write_attrs(self._file, attrs)

    # -- context manager / lifetime
    def __enter__(self) -> "H5RunWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    @property
    def file(self) -> h5py.File:
        if self._file is None:
            raise ValueError("the HDF5 writer is closed")
        return self._file

    def close(self) -> Path:
        """Finish the file and move it onto ``path``; returns ``path``."""
        if self._file is None:
            return self.path
        f = self._file
        try:
            if "layer_shapes" not in f.attrs and self._layer_shapes:
                f.attrs["layer_shapes"] = json.dumps(self._layer_shapes)
            f.flush()
        finally:
            f.close()
            self._file = None
        if self.path.exists() and not self.overwrite:  # appeared while we were writing
            raise FileExistsError(
                f"{self.path} appeared while the run was being written; "
                f"the new data was left in {self.tmp_path}")
        os.replace(self.tmp_path, self.path)
        return self.path

    def abort(self) -> None:
        """Discard everything written; ``path`` is left as it was."""
        if self._file is not None:
            try:
                self._file.close()
            finally:
                self._file = None
        try:
            self.tmp_path.unlink()
        except FileNotFoundError:
            pass

    # -- content
    def set_attrs(self, **attrs: Any) -> None:
        """Set root attributes; dicts/lists/None are JSON-encoded."""
        write_attrs(self.file, attrs)

    def write_inputs(self, images, labels=None, sources=None,
                     predictions: Mapping[str, Any] | None = None,
                     probabilities: Mapping[str, Any] | None = None) -> None:
        f = self.file
        images = to_numpy(images, np.float32)
        if images.ndim != 4:
            raise ValueError(f"images must be [N,C,H,W], got shape {images.shape}")
        n = images.shape[0]
        labels = np.full(n, -1, np.int64) if labels is None else to_numpy(labels, np.int64).reshape(-1)
        if sources is None:
            sources = [""] * n
        sources = [str(s) for s in sources]
        if len(labels) != n or len(sources) != n:
            raise ValueError(f"{n} images but {len(labels)} labels and {len(sources)} sources")
        replace_dataset(f, "inputs", images, chunks=(1,) + images.shape[1:], **COMPRESSION)
        replace_dataset(f, "labels", labels)
        replace_dataset(f, "sources", np.array(sources, dtype=object),
                         dtype=h5py.string_dtype("utf-8"))
        for gname, values, dtype in (("predictions", predictions, np.int64),
                                     ("probabilities", probabilities, np.float32)):
            for head, arr in (values or {}).items():
                arr = to_numpy(arr, dtype)
                if arr.shape[0] != n:
                    raise ValueError(f"{gname}[{head!r}] has {arr.shape[0]} rows for {n} images")
                replace_dataset(group(f, gname), check_name(head, "head"), arr)

    def write_activations(self, layer: str, acts, stats: Mapping[str, Any] | None = None) -> None:
        layer = check_name(layer, "layer")
        acts = to_numpy(acts, np.float32)
        if acts.ndim < 2:
            raise ValueError(f"activations must be [N,...], got shape {acts.shape}")
        ds = replace_dataset(group(self.file, "activations"), layer, acts,
                              chunks=(1,) + acts.shape[1:], **COMPRESSION)
        attrs: dict[str, Any] = {
            "layer": layer,
            "shape": np.asarray(acts.shape[1:], np.int64),
            "sparsity": float(np.mean(acts == 0)) if acts.size else 0.0,
            "mean": float(acts.mean()) if acts.size else 0.0,
        }
        attrs.update(stats or {})
        write_attrs(ds, attrs)
        self._layer_shapes[layer] = [int(s) for s in acts.shape[1:]]

    def write_filters(self, layer: str, patterns, scores, start_scores, filter_indices, ranking,
                      attrs: Mapping[str, Any] | None = None, objective: str = "channel", probs=None) -> None:
        """``/filters/<layer>/<objective>/``: patterns [T,C,H,W] in [0,1], scores, start_scores,
        targets (= filter_indices: unit or class of each row), ranking [T], probs [T] (class
        objective); the settings as attributes."""
        layer = check_name(layer, "layer")
        objective = check_name(objective, "objective")
        g = group(group(self.file, "filters"), layer)
        if objective in g:
            del g[objective]
        g = group(g, objective)
        patterns = to_numpy(patterns, np.float32)
        f = patterns.shape[0]
        targets = to_numpy(filter_indices, np.int64).reshape(-1)
        data = {
            "patterns": patterns,
            "scores": to_numpy(scores, np.float32).reshape(-1),
            "start_scores": to_numpy(start_scores, np.float32).reshape(-1),
            "targets": targets,
            "filter_indices": targets,
            "ranking": to_numpy(ranking, np.int64).reshape(-1),
        }
        if probs is not None:
            data["probs"] = to_numpy(probs, np.float32).reshape(-1)
        for name, arr in data.items():
            if arr.shape[0] != f:
                raise ValueError(f"filters {layer!r}: {name} has {arr.shape[0]} rows for {f} patterns")
            g.create_dataset(name, data=arr)
        write_attrs(g, {"layer": layer, "objective": objective, **(attrs or {})})

    def write_kernels(self, layer: str, weights) -> None:
        """``/kernels/<layer>``: the raw weights [F, C, kh, kw] of a (first) convolution layer."""
        replace_dataset(group(self.file, "kernels"), check_name(layer, "layer"), to_numpy(weights, np.float32))

    def write_masks(self, masks) -> None:
        """Ground-truth line masks of the images (``/masks`` bool [N,H,W]; lines only)."""
        replace_dataset(self.file, "masks", to_numpy(masks, bool))

    def write_attribution(self, method: str, head: str, layer: str, maps, maps_normalized, layer_maps, targets,
                          probs, attrs: Mapping[str, Any] | None = None, target: str | None = None) -> None:
        """The maps of one attribution method, head and layer (``layer`` is "input" for the
        input-gradient methods) under ``attribution/<method>/<head>/<layer>``; with ``target``
        (gradcam.target=[top1,top2]: one set per target) under ``.../<layer>/<target>``."""
        head, layer = check_name(head, "head"), check_name(layer, "layer")
        hg = group(group(group(self.file, "attribution"), check_name(method, "method")), head)
        leaf = layer
        if target is not None:
            hg, leaf = group(hg, layer), check_name(target, "target")
        if leaf in hg:
            del hg[leaf]
        g = group(hg, leaf)
        data = {
            "maps": to_numpy(maps, np.float32),
            "maps_normalized": to_numpy(maps_normalized, np.float32),
            "layer_maps": to_numpy(layer_maps, np.float32),
            "targets": to_numpy(targets, np.int64).reshape(-1),
            "probs": to_numpy(probs, np.float32).reshape(-1),
        }
        n = data["maps"].shape[0]
        for name, arr in data.items():
            if arr.shape[0] != n:
                raise ValueError(f"{method} {head}/{layer}: {name} has {arr.shape[0]} rows for {n} maps")
            if arr.ndim == 3:
                g.create_dataset(name, data=arr, chunks=(1,) + arr.shape[1:], **COMPRESSION)
            else:
                g.create_dataset(name, data=arr)
        write_attrs(g, {"method": method, "head": head, "layer": layer,
                        **({"target": target} if target is not None else {}), **(attrs or {})})

    def write_evaluation_indices(self, indices) -> None:
        """The test images job=evaluate scored (``/evaluation/indices``)."""
        replace_dataset(group(self.file, "evaluation"), "indices", to_numpy(indices, np.int64).reshape(-1))

    def write_evaluation(self, method: str, head: str, arrays: Mapping[str, Any],
                         attrs: Mapping[str, Any] | None = None) -> None:
        """job=evaluate's per-image arrays of one method and head (``/evaluation/<method>/<head>/``:
        maps, targets, pointing_game, energy_in_mask, mask_share, topk_iou, deletion_curves,
        insertion_curves, sanity_spearman -- what the run computed)."""
        method = check_name(method, "method")
        if method == "indices":
            raise ValueError("'indices' is reserved in /evaluation; pick another method name")
        g = group(group(self.file, "evaluation"), method)
        head = check_name(head, "head")
        if head in g:
            del g[head]
        g = group(g, head)
        for name, arr in arrays.items():
            arr = to_numpy(arr)
            g.create_dataset(check_name(name, "array"), data=arr, **(COMPRESSION if arr.ndim >= 3 else {}))
        write_attrs(g, {"method": method, "head": head, **(attrs or {})})

    def write_probe_indices(self, indices, attrs: Mapping[str, Any] | None = None) -> None:
        """The test indices the shortcut probe scored (``/probe/indices``), attrs on ``/probe``."""
        g = group(self.file, "probe")
        replace_dataset(g, "indices", to_numpy(indices, np.int64).reshape(-1))
        write_attrs(g, attrs)

    def write_probe(self, factor: str, levels, level_names, accuracy: Mapping[str, Any],
                    attrs: Mapping[str, Any] | None = None) -> None:
        """One factor of the shortcut probe: ``levels`` [L], ``level_names`` [L] and the accuracy
        of each head at each level (``accuracy[head]`` [L])."""
        factor = check_name(factor, "probe factor")
        if factor == "indices":
            raise ValueError("'indices' is reserved in /probe; pick another factor name")
        levels = to_numpy(levels, np.float64).reshape(-1)
        names = [str(n) for n in level_names]
        if len(names) != len(levels):
            raise ValueError(f"probe {factor!r}: {len(names)} level names for {len(levels)} levels")
        acc = {check_name(h, "head"): to_numpy(v, np.float64).reshape(-1) for h, v in accuracy.items()}
        for head, values in acc.items():
            if len(values) != len(levels):
                raise ValueError(f"probe {factor!r}: head {head!r} has {len(values)} accuracies "
                                 f"for {len(levels)} levels")
        pg = group(self.file, "probe")
        if factor in pg:
            del pg[factor]
        g = group(pg, factor)
        g.create_dataset("levels", data=levels)
        g.create_dataset("level_names", data=np.array(names, dtype=object), dtype=h5py.string_dtype("utf-8"))
        ag = group(g, "accuracy")
        for head, values in acc.items():
            ag.create_dataset(head, data=values)
        write_attrs(g, {"factor": factor, **(attrs or {})})

    def write_units(self, layer: str, arrays: Mapping[str, Any], attrs: Mapping[str, Any] | None = None) -> None:
        """job=units: the top-k test images of every unit of one layer (``/units/<layer>/``: values,
        indices, labels [U,k], positions [U,k,2], boxes [U,k,4], crops uint8 [U,k,C,s,s]; layout in
        docs/units-explorer.md); attrs: kind, k, images, the receptive field."""
        layer = check_name(layer, "layer")
        g = group(self.file, "units")
        if layer in g:
            del g[layer]
        g = group(g, layer)
        units = None
        for name, arr in arrays.items():
            arr = to_numpy(arr)
            units = arr.shape[0] if units is None else units
            if arr.shape[0] != units:
                raise ValueError(f"units {layer!r}: {name} has {arr.shape[0]} rows for {units} units")
            g.create_dataset(check_name(name, "array"), data=arr, **(COMPRESSION if arr.ndim >= 3 else {}))
        write_attrs(g, {"layer": layer, **(attrs or {})})

