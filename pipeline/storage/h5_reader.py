"""The read side of the HDF5 run store: :class:`H5Run`, one reader per group the writer writes
(the layout: :mod:`pipeline.storage.h5store`)."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from pipeline.storage.h5_attrs import read_attrs

__all__ = ["H5Run"]

class H5Run:
    """Read side of a run file (opened read-only); also a context manager."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"no HDF5 run file at {self.path}")
        self._file = h5py.File(self.path, "r")

    def __enter__(self) -> "H5Run":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    @property
    def file(self) -> h5py.File:
        if self._file is None:
            raise ValueError("the HDF5 run file is closed")
        return self._file

    @property
    def attrs(self) -> dict[str, Any]:
        """Root attributes; JSON-encoded ones (e.g. ``layer_shapes``) decoded."""
        out = read_attrs(self.file)
        if isinstance(out.get("layer_shapes"), str):
            try:
                out["layer_shapes"] = json.loads(out["layer_shapes"])
            except json.JSONDecodeError:
                pass
        return out

    def _names(self, group: str) -> list[str]:
        return list(self.file[group].keys()) if group in self.file else []

    # -- inputs
    def inputs(self) -> dict[str, Any]:
        f = self.file
        return {
            "images": f["inputs"][()],
            "labels": f["labels"][()],
            "sources": [str(s) for s in f["sources"].asstr()[()]],
            "predictions": {k: v[()] for k, v in f["predictions"].items()} if "predictions" in f else {},
            "probabilities": {k: v[()] for k, v in f["probabilities"].items()} if "probabilities" in f else {},
            "masks": f["masks"][()] if "masks" in f else None,
        }

    # -- activations
    def activation_layers(self) -> list[str]:
        return self._names("activations")

    def _activation_ds(self, layer: str) -> h5py.Dataset:
        try:
            return self.file["activations"][layer]
        except KeyError:
            raise KeyError(f"no activations for layer {layer!r}; stored: {self.activation_layers()}") from None

    def activations(self, layer: str, index: int | slice | None = None) -> np.ndarray:
        ds = self._activation_ds(layer)
        return ds[()] if index is None else ds[index]

    def activation_stats(self, layer: str) -> dict[str, Any]:
        return read_attrs(self._activation_ds(layer))

    # -- filters
    def filter_layers(self) -> list[str]:
        return self._names("filters")

    def filter_objectives(self, layer: str) -> list[str]:
        return self._names(f"filters/{layer}") if layer in self.filter_layers() else []

    def filters(self, layer: str, objective: str = "channel") -> dict[str, Any]:
        """``/filters/<layer>/<objective>``: patterns, scores, targets, ... and ``attrs`` (the settings)."""
        try:
            g = self.file["filters"][layer][objective]
        except KeyError:
            raise KeyError(f"no filter patterns for layer {layer!r}, objective {objective!r}; stored: "
                           f"{ {k: self.filter_objectives(k) for k in self.filter_layers()} }") from None
        out: dict[str, Any] = {k: v[()] for k, v in g.items()}
        out["attrs"] = read_attrs(g)
        return out

    def kernels(self, layer: str):
        """``/kernels/<layer>``: raw convolution weights [F, C, kh, kw]."""
        try:
            return self.file["kernels"][layer][()]
        except KeyError:
            raise KeyError(f"no kernels for layer {layer!r}; stored: {self._names('kernels')}") from None

    # -- attribution maps
    def attribution_methods(self) -> list[str]:
        return self._names("attribution")

    def attribution_heads(self, method: str) -> list[str]:
        return self._names(f"attribution/{method}") if method in self.attribution_methods() else []

    def attribution_layers(self, method: str, head: str) -> list[str]:
        return self._names(f"attribution/{method}/{head}") if head in self.attribution_heads(method) else []

    def attribution_targets(self, method: str, head: str, layer: str) -> list[str]:
        """The targets stored one set each (gradcam.target=[top1,top2]: ``top1``, ``top2``); [] for one set."""
        if layer not in self.attribution_layers(method, head):
            return []
        g = self.file["attribution"][method][head][layer]
        return [k for k in g if isinstance(g[k], h5py.Group)]

    def attribution(self, method: str, head: str, layer: str, target: str | None = None) -> dict[str, Any]:
        """maps, maps_normalized, layer_maps, targets, probs and ``attrs`` of one method, head and layer
        (and ``target``, when the run stored one set per target: see :meth:`attribution_targets`)."""
        try:
            g = self.file["attribution"][method][head][layer]
            if target is not None:
                g = g[target]
        except KeyError:
            raise KeyError(f"no {method} maps for head {head!r}, layer {layer!r}" +
                           (f", target {target!r}" if target is not None else "") +
                           f"; stored methods: {self.attribution_methods()}") from None
        if target is None and "maps" not in g:
            raise KeyError(f"{method} maps for head {head!r}, layer {layer!r} are stored per target: pass "
                           f"target= one of {self.attribution_targets(method, head, layer)}")
        return {**{k: v[()] for k, v in g.items()}, "attrs": read_attrs(g)}

    # -- job=evaluate
    def evaluation_indices(self):
        """The test indices job=evaluate scored."""
        if "evaluation" not in self.file or "indices" not in self.file["evaluation"]:
            raise KeyError("no evaluation in this file (job=evaluate writes /evaluation)")
        return self.file["evaluation"]["indices"][()]

    def evaluation_methods(self) -> list[str]:
        return [k for k in self._names("evaluation") if k != "indices"]

    def evaluation(self, method: str, head: str) -> dict[str, Any]:
        """The per-image arrays job=evaluate stored for one method and head, and ``attrs``."""
        try:
            g = self.file["evaluation"][method][head]
        except KeyError:
            raise KeyError(f"no evaluation of {method!r}, head {head!r}; stored methods: "
                           f"{self.evaluation_methods()}") from None
        return {**{k: v[()] for k, v in g.items()}, "attrs": read_attrs(g)}

    # -- shortcut probe
    def probe_factors(self) -> list[str]:
        """The probe's factors in the order written (the baseline first); [] without a probe."""
        return [k for k in self._names("probe") if k != "indices"]

    def probe_indices(self) -> dict[str, Any]:
        """``{"indices": [M] test indices, "attrs": {...}}`` of the shortcut probe."""
        if "probe" not in self.file or "indices" not in self.file["probe"]:
            raise KeyError("no shortcut probe in this file (job=probe writes /probe)")
        g = self.file["probe"]
        return {"indices": g["indices"][()], "attrs": read_attrs(g)}

    def probe(self, factor: str) -> dict[str, Any]:
        """One factor: ``levels`` [L], ``level_names`` (list of str), ``accuracy`` {head: [L]}, ``attrs``."""
        if factor not in self.probe_factors():
            raise KeyError(f"no probe factor {factor!r}; stored: {self.probe_factors()}")
        g = self.file["probe"][factor]
        return {"levels": g["levels"][()], "level_names": [str(s) for s in g["level_names"].asstr()[()]],
                "accuracy": {h: v[()] for h, v in g["accuracy"].items()}, "attrs": read_attrs(g)}

    # -- job=units
    def unit_layers(self) -> list[str]:
        """The layers job=units ranked test images for (convolutions, then heads)."""
        return self._names("units")

    def units(self, layer: str) -> dict[str, Any]:
        """``/units/<layer>``: values, indices, labels, positions, boxes, crops and ``attrs``."""
        try:
            g = self.file["units"][layer]
        except KeyError:
            raise KeyError(f"no dataset examples for layer {layer!r}; stored: {self.unit_layers()}") from None
        return {**{k: v[()] for k, v in g.items()}, "attrs": read_attrs(g)}

