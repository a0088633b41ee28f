"""Shared pieces of the HDF5 run store (:mod:`pipeline.storage.h5store`): conversion to numpy,
name checks, attributes (JSON-encoded when HDF5 cannot hold them natively), group helpers."""
from __future__ import annotations

import json
import os
from typing import Any, Mapping

import h5py
import numpy as np

__all__ = ["COMPRESSION", "to_numpy", "check_name", "cnnvis_version", "write_attrs", "read_attrs",
           "replace_dataset", "group"]

COMPRESSION = {"compression": "gzip", "compression_opts": 4, "shuffle": True}


# --------------------------------------------------------------------------- helpers
def to_numpy(x: Any, dtype=None) -> np.ndarray:
    """Torch tensor / array-like -> numpy array (optionally cast)."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):
        x = x.detach().cpu().numpy()
    arr = np.asarray(x)
    if dtype is not None:
        arr = arr.astype(dtype, copy=False)
    return np.ascontiguousarray(arr)


def check_name(name: str, what: str) -> str:
    name = str(name)
    if not name or "/" in name or name in (".", ".."):
        raise ValueError(f"invalid {what} name {name!r}: must be non-empty and contain no '/'")
    return name


def cnnvis_version() -> str:
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


def write_attrs(obj: h5py.HLObject, attrs: Mapping[str, Any] | None) -> None:
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


def read_attrs(obj: h5py.HLObject) -> dict[str, Any]:
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


def replace_dataset(group: h5py.Group, name: str, data: np.ndarray, **kwargs) -> h5py.Dataset:
    if name in group:
        del group[name]
    return group.create_dataset(name, data=data, **kwargs)


def group(parent: h5py.Group, name: str) -> h5py.Group:
    if name in parent:
        return parent[name]
    return parent.create_group(name, track_order=True)
