"""HDF5 store of one visualize run: one file per run, written atomically.

File layout (all arrays C-ordered, images and activations channels-first)::

    /inputs                         float32 [N,C,H,W]  images as fed to the model, in [0,1]
    /labels                         int64   [N]        true label, -1 when unknown (a user image)
    /sources                        str     [N]        where each image came from ("test[42]", a path)
    /predictions/<head>             int64   [N]        predicted class per head ("class" for
    /probabilities/<head>           float32 [N,K]      single-output models; K=1 for sigmoid heads)
    /activations/<layer>            float32 [N,C,H,W]  (or [N,F] for a linear layer); one image per
                                                       chunk (1,C,H,W), gzip level 4 + shuffle;
                                    attrs: layer, shape (per image), sparsity (fraction of exact
                                    zeros), mean, plus any stats given by the caller
    /filters/<layer>/patterns       float32 [F,C,H,W]  input pattern maximizing each filter's mean response
    /filters/<layer>/scores         float32 [F]        response reached by each pattern
    /filters/<layer>/start_scores   float32 [F]        response of the blank starting image
    /filters/<layer>/filter_indices int64   [F]        filter (output channel) of each pattern
    /filters/<layer>/ranking        int64   [F]        rows of the arrays above ordered by score, best first
                                    attrs: steps, step_size, ... (the optimiser's settings)
    /gradcam/<head>/<layer>/maps            float32 [N,H,W]  upsampled to the input size, raw scale
    /gradcam/<head>/<layer>/maps_normalized float32 [N,H,W]  per image min-max to [0,1] (zeros if the map is all zero)
    /gradcam/<head>/<layer>/layer_maps      float32 [N,h,w]  at the layer's own resolution, raw scale
    /gradcam/<head>/<layer>/targets         int64   [N]      class explained for each image
    /gradcam/<head>/<layer>/probs           float32 [N]      the model's probability of that class
    /probe/indices                  int64   [M]        test images the shortcut probe scored (job=probe);
                                    attrs: images, redrawn, style, differs_from_stored
    /probe/<factor>/levels          float64 [L]        the factor's levels (NaN for the baseline)
    /probe/<factor>/level_names     str     [L]        "x0.7", "sigma 1", "q50", "+1 px", "corner", ...
    /probe/<factor>/accuracy/<head> float64 [L]        accuracy of the head (and "aggregate") per level;
                                    attrs of /probe/<factor>: images, description

    root attrs: dataset, model, checkpoint, created (ISO 8601 time), config (the run's resolved
                config as a YAML string), cnnvis_version, layer_shapes (JSON: layer -> per-image
                shape), json_attrs (JSON list of the attrs whose values are JSON-encoded)

Layer names are the model's module names and are kept verbatim as group/dataset names, dots
included ("features.conv1"); a name containing "/" is refused.  Groups keep insertion order, so
layers read back in the order they were written (the model's order).

Attribute values that HDF5 cannot hold natively (dicts, lists, None, ...) are stored as JSON
strings and their names listed in the ``json_attrs`` attribute of the same object;
:class:`H5Run` decodes them again.

The file is written to ``<name>.partial-<pid>`` in the target directory and moved onto the
target with ``os.replace`` only when the writer is closed without an exception, so a crashed run
never leaves a half-written file under the real name (nor does it clobber an older one).
"""
from __future__ import annotations

import datetime as _dt
import json
import os
from pathlib import Path
from typing import Any, Mapping

import h5py
import numpy as np

__all__ = ["H5RunWriter", "H5Run"]

_COMPRESSION = {"compression": "gzip", "compression_opts": 4, "shuffle": True}


# --------------------------------------------------------------------------- helpers
def _np(x: Any, dtype=None) -> np.ndarray:
    """Torch tensor / array-like -> numpy array (optionally cast)."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):
        x = x.detach().cpu().numpy()
    arr = np.asarray(x)
    if dtype is not None:
        arr = arr.astype(dtype, copy=False)
    return np.ascontiguousarray(arr)


def _check_name(name: str, what: str) -> str:
    name = str(name)
    if not name or "/" in name or name in (".", ".."):
        raise ValueError(f"invalid {what} name {name!r}: must be non-empty and contain no '/'")
    return name


def _cnnvis_version() -> str:
    try:
        from importlib.metadata import version

        return version("cnnvis")
    except Exception:  # not installed as a distribution
        try:
            import pipeline

            return str(getattr(pipeline, "__version__", "0+unknown"))
        except Exception:
            return "0+unknown"


def _attr_value(value: Any) -> tuple[Any, bool]:
    """Value storable as an HDF5 attribute, and whether it was JSON-encoded."""
    if hasattr(value, "detach") and hasattr(value, "cpu"):
        value = value.detach().cpu().numpy()
    if isinstance(value, os.PathLike):
        return os.fspath(value), False
    if isinstance(value, (str, bytes, bool, int, float, np.generic)):
        return value, False
    if isinstance(value, np.ndarray) and value.dtype.kind in "biuf":
        return value, False
    return json.dumps(value, default=_json_default, sort_keys=False), True


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if hasattr(obj, "detach"):
        return obj.detach().cpu().tolist()
    return str(obj)


def _set_attrs(obj: h5py.HLObject, attrs: Mapping[str, Any] | None) -> None:
    if not attrs:
        return
    json_keys = set(json.loads(obj.attrs.get("json_attrs", "[]")))
    for key, value in attrs.items():
        stored, encoded = _attr_value(value)
        obj.attrs[str(key)] = stored
        if encoded:
            json_keys.add(str(key))
        else:
            json_keys.discard(str(key))
    if json_keys:
        obj.attrs["json_attrs"] = json.dumps(sorted(json_keys))
    elif "json_attrs" in obj.attrs:
        del obj.attrs["json_attrs"]


def _read_attrs(obj: h5py.HLObject) -> dict[str, Any]:
    raw = dict(obj.attrs)
    json_keys = set(json.loads(raw.pop("json_attrs", "[]")))
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if isinstance(value, bytes):
            value = value.decode("utf-8")
        if key in json_keys and isinstance(value, str):
            value = json.loads(value)
        elif isinstance(value, np.generic):
            value = value.item()
        out[key] = value
    return out


def _replace_dataset(group: h5py.Group, name: str, data: np.ndarray, **kwargs) -> h5py.Dataset:
    if name in group:
        del group[name]
    return group.create_dataset(name, data=data, **kwargs)


def _group(parent: h5py.Group, name: str) -> h5py.Group:
    if name in parent:
        return parent[name]
    return parent.create_group(name, track_order=True)


# --------------------------------------------------------------------------- writer
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
        self.tmp_path = self.path.with_name(f"{self.path.name}.partial-{os.getpid()}")
        self._file: h5py.File | None = h5py.File(self.tmp_path, "w", track_order=True)
        self._layer_shapes: dict[str, list[int]] = {}
        self._file.attrs["created"] = _dt.datetime.now().astimezone().isoformat(timespec="seconds")
        self._file.attrs["cnnvis_version"] = _cnnvis_version()
        _set_attrs(self._file, attrs)

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
        _set_attrs(self.file, attrs)

    def write_inputs(self, images, labels=None, sources=None,
                     predictions: Mapping[str, Any] | None = None,
                     probabilities: Mapping[str, Any] | None = None) -> None:
        f = self.file
        images = _np(images, np.float32)
        if images.ndim != 4:
            raise ValueError(f"images must be [N,C,H,W], got shape {images.shape}")
        n = images.shape[0]
        labels = np.full(n, -1, np.int64) if labels is None else _np(labels, np.int64).reshape(-1)
        if sources is None:
            sources = [""] * n
        sources = [str(s) for s in sources]
        if len(labels) != n or len(sources) != n:
            raise ValueError(f"{n} images but {len(labels)} labels and {len(sources)} sources")
        _replace_dataset(f, "inputs", images, chunks=(1,) + images.shape[1:], **_COMPRESSION)
        _replace_dataset(f, "labels", labels)
        _replace_dataset(f, "sources", np.array(sources, dtype=object),
                         dtype=h5py.string_dtype("utf-8"))
        for gname, values, dtype in (("predictions", predictions, np.int64),
                                     ("probabilities", probabilities, np.float32)):
            for head, arr in (values or {}).items():
                arr = _np(arr, dtype)
                if arr.shape[0] != n:
                    raise ValueError(f"{gname}[{head!r}] has {arr.shape[0]} rows for {n} images")
                _replace_dataset(_group(f, gname), _check_name(head, "head"), arr)

    def write_activations(self, layer: str, acts, stats: Mapping[str, Any] | None = None) -> None:
        layer = _check_name(layer, "layer")
        acts = _np(acts, np.float32)
        if acts.ndim < 2:
            raise ValueError(f"activations must be [N,...], got shape {acts.shape}")
        ds = _replace_dataset(_group(self.file, "activations"), layer, acts,
                              chunks=(1,) + acts.shape[1:], **_COMPRESSION)
        attrs: dict[str, Any] = {
            "layer": layer,
            "shape": np.asarray(acts.shape[1:], np.int64),
            "sparsity": float(np.mean(acts == 0)) if acts.size else 0.0,
            "mean": float(acts.mean()) if acts.size else 0.0,
        }
        attrs.update(stats or {})
        _set_attrs(ds, attrs)
        self._layer_shapes[layer] = [int(s) for s in acts.shape[1:]]

    def write_filters(self, layer: str, patterns, scores, start_scores, filter_indices, ranking,
                      attrs: Mapping[str, Any] | None = None) -> None:
        layer = _check_name(layer, "layer")
        g = _group(self.file, "filters")
        if layer in g:
            del g[layer]
        g = _group(g, layer)
        patterns = _np(patterns, np.float32)
        f = patterns.shape[0]
        data = {
            "patterns": patterns,
            "scores": _np(scores, np.float32).reshape(-1),
            "start_scores": _np(start_scores, np.float32).reshape(-1),
            "filter_indices": _np(filter_indices, np.int64).reshape(-1),
            "ranking": _np(ranking, np.int64).reshape(-1),
        }
        for name, arr in data.items():
            if arr.shape[0] != f:
                raise ValueError(f"filters {layer!r}: {name} has {arr.shape[0]} rows for {f} patterns")
            g.create_dataset(name, data=arr)
        _set_attrs(g, {"layer": layer, **(attrs or {})})

    def write_gradcam(self, head: str, layer: str, maps, maps_normalized, layer_maps, targets,
                      probs, attrs: Mapping[str, Any] | None = None, method: str = "gradcam") -> None:
        """Maps of Grad-CAM (under ``gradcam/``) or of another attribution method (under
        ``attribution/<method>/``, same layout; ``layer`` is "input" for gradient methods)."""
        head = _check_name(head, "head")
        layer = _check_name(layer, "layer")
        root = self.file if method == "gradcam" else _group(self.file, "attribution")
        hg = _group(_group(root, _check_name(method, "method")), head)
        if layer in hg:
            del hg[layer]
        g = _group(hg, layer)
        data = {
            "maps": _np(maps, np.float32),
            "maps_normalized": _np(maps_normalized, np.float32),
            "layer_maps": _np(layer_maps, np.float32),
            "targets": _np(targets, np.int64).reshape(-1),
            "probs": _np(probs, np.float32).reshape(-1),
        }
        n = data["maps"].shape[0]
        for name, arr in data.items():
            if arr.shape[0] != n:
                raise ValueError(f"gradcam {head}/{layer}: {name} has {arr.shape[0]} rows for {n} maps")
            if arr.ndim == 3:
                g.create_dataset(name, data=arr, chunks=(1,) + arr.shape[1:], **_COMPRESSION)
            else:
                g.create_dataset(name, data=arr)
        _set_attrs(g, {"head": head, "layer": layer, **(attrs or {})})


    def write_probe_indices(self, indices, attrs: Mapping[str, Any] | None = None) -> None:
        """The test indices the shortcut probe scored (``/probe/indices``), attrs on ``/probe``."""
        g = _group(self.file, "probe")
        _replace_dataset(g, "indices", _np(indices, np.int64).reshape(-1))
        _set_attrs(g, attrs)

    def write_probe(self, factor: str, levels, level_names, accuracy: Mapping[str, Any],
                    attrs: Mapping[str, Any] | None = None) -> None:
        """One factor of the shortcut probe: ``levels`` [L], ``level_names`` [L] and the accuracy
        of each head at each level (``accuracy[head]`` [L])."""
        factor = _check_name(factor, "probe factor")
        if factor == "indices":
            raise ValueError("'indices' is reserved in /probe; pick another factor name")
        levels = _np(levels, np.float64).reshape(-1)
        names = [str(n) for n in level_names]
        if len(names) != len(levels):
            raise ValueError(f"probe {factor!r}: {len(names)} level names for {len(levels)} levels")
        acc = {_check_name(h, "head"): _np(v, np.float64).reshape(-1) for h, v in accuracy.items()}
        for head, values in acc.items():
            if len(values) != len(levels):
                raise ValueError(f"probe {factor!r}: head {head!r} has {len(values)} accuracies "
                                 f"for {len(levels)} levels")
        pg = _group(self.file, "probe")
        if factor in pg:
            del pg[factor]
        g = _group(pg, factor)
        g.create_dataset("levels", data=levels)
        g.create_dataset("level_names", data=np.array(names, dtype=object), dtype=h5py.string_dtype("utf-8"))
        ag = _group(g, "accuracy")
        for head, values in acc.items():
            ag.create_dataset(head, data=values)
        _set_attrs(g, {"factor": factor, **(attrs or {})})


# --------------------------------------------------------------------------- reader
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
        out = _read_attrs(self.file)
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
        return _read_attrs(self._activation_ds(layer))

    # -- filters
    def filter_layers(self) -> list[str]:
        return self._names("filters")

    def filters(self, layer: str) -> dict[str, Any]:
        try:
            g = self.file["filters"][layer]
        except KeyError:
            raise KeyError(f"no filter patterns for layer {layer!r}; stored: {self.filter_layers()}") from None
        out: dict[str, Any] = {k: v[()] for k, v in g.items()}
        out["attrs"] = _read_attrs(g)
        return out

    # -- gradcam
    def gradcam_heads(self) -> list[str]:
        return self._names("gradcam")

    def gradcam_layers(self, head: str) -> list[str]:
        return self._names(f"gradcam/{head}") if head in self.gradcam_heads() else []

    def gradcam(self, head: str, layer: str, method: str = "gradcam") -> dict[str, Any]:
        try:
            root = self.file if method == "gradcam" else self.file["attribution"]
            g = root[method][head][layer]
        except KeyError:
            raise KeyError(f"no Grad-CAM maps for head {head!r}, layer {layer!r}") from None
        out: dict[str, Any] = {k: v[()] for k, v in g.items()}
        out["attrs"] = _read_attrs(g)
        return out

    # -- shortcut probe
    def probe_factors(self) -> list[str]:
        """The probe's factors in the order written (the baseline first); [] without a probe."""
        return [k for k in self._names("probe") if k != "indices"]

    def probe_indices(self) -> dict[str, Any]:
        """``{"indices": [M] test indices, "attrs": {...}}`` of the shortcut probe."""
        if "probe" not in self.file or "indices" not in self.file["probe"]:
            raise KeyError("no shortcut probe in this file (job=probe writes /probe)")
        g = self.file["probe"]
        return {"indices": g["indices"][()], "attrs": _read_attrs(g)}

    def probe(self, factor: str) -> dict[str, Any]:
        """One factor: ``levels`` [L], ``level_names`` (list of str), ``accuracy`` {head: [L]}, ``attrs``."""
        if factor not in self.probe_factors():
            raise KeyError(f"no probe factor {factor!r}; stored: {self.probe_factors()}")
        g = self.file["probe"][factor]
        return {"levels": g["levels"][()], "level_names": [str(s) for s in g["level_names"].asstr()[()]],
                "accuracy": {h: v[()] for h, v in g["accuracy"].items()}, "attrs": _read_attrs(g)}
