"""``explorer.html``: one self-contained page to click through a visualize run (docs/units-explorer.md).

Everything is read from the run's ``visualization.h5`` after the run (:class:`~pipeline.storage.h5_reader.H5Run`)
and embedded in the page as JSON (images and maps as base64 bytes, quantized to 0..255); the page's
script and style (``pipeline/report/explorer_assets/``) are inlined too, so it opens from ``file://``
with no server, no network and no build step. The page draws every picture itself on canvases:
activations through viridis on each layer's shared scale (min..max over the run's images, as the
activation figures), attribution maps through jet over the greyscale image with the mask outline,
optimized pictures and dataset examples as stored.
"""
from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np

__all__ = ["explorer_data", "write_explorer", "explorer_section", "sweep_explorers_section", "quantize", "lut", "ASSETS"]

ASSETS = Path(__file__).with_name("explorer_assets")
ATTR_ALPHA = 0.5   # the overlay's opacity at the map's peak (each pixel: ATTR_ALPHA x map), as the Grad-CAM figures


def _b64(arr: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(arr, dtype=np.uint8).tobytes()).decode("ascii")


def quantize(values, lo: float, hi: float) -> np.ndarray:
    """``values`` on the scale lo..hi as 0..255 (what the page's colour look-up reads)."""
    v = (np.asarray(values, np.float64) - lo) / (hi - lo if hi > lo else 1.0)
    return np.clip(np.round(np.nan_to_num(v) * 255), 0, 255).astype(np.uint8)


def lut(name: str) -> np.ndarray:
    """The 256 RGB bytes of a matplotlib colour map [256, 3]."""
    from matplotlib import colormaps

    return np.round(colormaps[name](np.linspace(0, 1, 256))[:, :3] * 255).astype(np.uint8)


def _rgb_bytes(images) -> np.ndarray:
    """[N, C, H, W] in [0, 1] -> uint8 [N, H, W, 3] (grey repeated; other channel counts: their mean)."""
    x = np.clip(np.nan_to_num(np.asarray(images, np.float32)), 0, 1)
    if x.shape[1] == 3:
        rgb = np.moveaxis(x, 1, -1)
    else:
        g = x[:, 0] if x.shape[1] == 1 else x.mean(axis=1)
        rgb = np.repeat(g[..., None], 3, axis=-1)
    return np.round(rgb * 255).astype(np.uint8)


def _head_names(head: str, k: int, class_names: list[str]) -> list[str]:
    from pipeline.data.lines_labels import head_class_names

    return head_class_names(head, max(2, k), class_names)


def explorer_data(h5_path: Path) -> dict:
    """Everything the page shows, as JSON-ready values (see the module docstring)."""
    from pipeline.data.lines_labels import readable_name
    from pipeline.storage.h5_reader import H5Run

    with H5Run(h5_path) as run:
        attrs = run.attrs
        class_names = [str(c) for c in (attrs.get("class_names") or [])]
        inp = run.inputs()
        n, c, h, w = inp["images"].shape
        readable = [readable_name(x) for x in class_names]
        heads = {}
        for head, probs in inp["probabilities"].items():
            probs = np.asarray(probs, np.float64).reshape(n, -1)
            if probs.shape[1] == 1:  # a sigmoid head: the probability of class 1
                probs = np.concatenate([1 - probs, probs], axis=1)
            heads[head] = {"names": _head_names(head, probs.shape[1], class_names),
                           "pred": [int(p) for p in inp["predictions"][head]],
                           "prob": [float(probs[i, int(p)]) for i, p in enumerate(inp["predictions"][head])]}
        images = _rgb_bytes(inp["images"])
        data = {
            "title": f"{attrs.get('model', 'model')} on {attrs.get('dataset', '?')}",
            "jobs": list(attrs.get("jobs") or []), "size": [h, w],
            "images": [{"rgb": _b64(images[i]), "label": int(inp["labels"][i]), "source": inp["sources"][i],
                        "truth": readable[int(inp["labels"][i])] if 0 <= int(inp["labels"][i]) < len(readable)
                        else "unknown"} for i in range(n)],
            "heads": heads,
            "masks": None if inp["masks"] is None else [_b64(m.astype(np.uint8)) for m in inp["masks"]],
            "luts": {"viridis": _b64(lut("viridis")), "jet": _b64(lut("jet"))},
            "alpha": ATTR_ALPHA,
            "layers": [], "attribution": [], "filters": {}, "units": {},
        }
        for layer in run.activation_layers():
            a = run.activations(layer)
            if a.ndim != 4:
                continue
            finite = a[np.isfinite(a)]
            lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
            if hi <= lo:
                hi = lo + 1.0
            data["layers"].append({"name": layer, "shape": list(a.shape[1:]), "lo": lo, "hi": hi,
                                   "acts": [_b64(quantize(a[i], lo, hi)) for i in range(n)]})
        for method in run.attribution_methods():
            for head in run.attribution_heads(method):
                for layer in run.attribution_layers(method, head):
                    for target in run.attribution_targets(method, head, layer) or [None]:
                        r = run.attribution(method, head, layer, target)
                        maps = np.asarray(r["maps_normalized"], np.float32)
                        data["attribution"].append({
                            "method": method, "head": head, "layer": layer, "target": target,
                            "maps": [_b64(quantize(m, 0.0, 1.0)) for m in maps],
                            "targets": [int(t) for t in r["targets"]], "probs": [float(p) for p in r["probs"]]})
        for layer in run.filter_layers():
            for objective in run.filter_objectives(layer):
                r = run.filters(layer, objective)
                pics = _rgb_bytes(r["patterns"])
                data["filters"].setdefault(layer, {})[objective] = {
                    "size": list(pics.shape[1:3]), "targets": [int(t) for t in r["targets"]],
                    "scores": [float(s) for s in r["scores"]], "pictures": [_b64(p) for p in pics]}
        for layer in run.unit_layers():
            r = run.units(layer)
            crops = r["crops"]
            u, k = crops.shape[:2]
            rgb = _rgb_bytes(crops.reshape((u * k,) + crops.shape[2:]).astype(np.float32) / 255.0)
            ua = r["attrs"]
            data["units"][layer] = {
                "kind": ua.get("kind", "channel"), "k": k, "images": int(ua.get("images", 0)),
                "rf": int(ua.get("rf_size", 0)), "size": list(rgb.shape[1:3]),
                "class_names": list(ua.get("class_names") or []),
                "values": np.round(r["values"].astype(np.float64), 4).tolist(),
                "indices": r["indices"].astype(int).tolist(),
                "labels": [[readable[x] if 0 <= x < len(readable) else "?" for x in row] for row in r["labels"].tolist()],
                "crops": [[_b64(rgb[i * k + j]) for j in range(k)] for i in range(u)]}
    return data


def write_explorer(h5_path: Path, out: Path | None = None, title: str | None = None) -> Path:
    """Write ``explorer.html`` (next to ``h5_path`` unless ``out``); returns its path."""
    h5_path = Path(h5_path)
    out = Path(out) if out is not None else h5_path.with_name("explorer.html")
    data = explorer_data(h5_path)
    if title:
        data["title"] = title
    payload = json.dumps(data, separators=(",", ":")).replace("</", "<\\/")
    css = (ASSETS / "explorer.css").read_text()
    js = (ASSETS / "explorer.js").read_text()
    html = (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
            f"<title>Explorer: {_escape(data['title'])}</title>\n<style>\n{css}\n</style></head>\n"
            f"<body>\n<script id=\"explorer-data\" type=\"application/json\">{payload}</script>\n"
            f"<script>\n{js}\n</script>\n</body></html>\n")
    tmp = out.with_name(out.name + ".partial")
    tmp.write_text(html, encoding="utf-8")
    tmp.replace(out)
    return out


def explorer_section(path: Path) -> "Section":
    """The report's pointer to the explorer page (a link where the report supports links)."""
    import dataclasses

    from pipeline.report.sections import Section

    text = ("One page to click through this run: pick an image, see its activations in every layer and every "
            "attribution map, click a channel for the unit's optimized picture and its top test images; "
            "arrow keys step through the images. It opens from the file, no server needed.")
    if "links" in {f.name for f in dataclasses.fields(Section)}:
        return Section("Explorer", paragraphs=[text], links=[("explorer.html", str(path))], anchor="explorer")
    return Section("Explorer", paragraphs=[text, f"Open {Path(path).name} next to this report."])


def sweep_explorers_section(runs) -> "Section | None":
    """The sweep index's links to each run's explorer page (``runs``: label and run folder pairs); None
    when no run has one."""
    import dataclasses

    from pipeline.report.sections import Section, Table

    pages = [(label, Path(path) / "explorer.html") for label, path in runs if (Path(path) / "explorer.html").is_file()]
    if not pages:
        return None
    text = "Each run's explorer: one page to click through its images, layers, attribution maps and units."
    if "links" in {f.name for f in dataclasses.fields(Section)}:
        return Section("Explorers", paragraphs=[text], links=[(label, str(p)) for label, p in pages], anchor="explorers")
    return Section("Explorers", paragraphs=[text], tables=[Table("Explorer pages", ["run", "page"],
                                                                 [[label, str(p)] for label, p in pages])])


def _escape(s: str) -> str:
    return str(s).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
