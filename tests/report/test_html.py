"""Tests of pipeline.report.html: escaping, relative links, atomic writes, number formatting."""
from __future__ import annotations

import os
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from pipeline.report import html as report
from pipeline.report.html import Figure, Section, Table, format_value, write_report, write_sweep_index


class _Collect(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.attrs, self.text = [], [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attrs.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def _parse(path):
    p = _Collect()
    p.feed(Path(path).read_text(encoding="utf-8"))
    return p


def _sections(tmp_path):
    (tmp_path / "figures").mkdir()
    return [
        Section(
            title="Activations <features.conv1>",
            paragraphs=["First layer & friends"],
            observations=["first layers act as edge detectors", "<script>alert(1)</script>"],
            tables=[Table("Sparsity per layer", ["layer", "sparsity", "N"],
                          [["features.conv1", 0.123456, 6], ["fc.0", np.float32(0.5), np.int64(12345)]])],
            figures=[Figure("figures/act 0.png", "<script>alert('x')</script> image 0"),
                     Figure(tmp_path / "figures" / "abs.png", "absolute path")],
            subsections=[Section("Grad-CAM", figures=[Figure("gradcam/angle.png", "angle head")])],
        ),
        Section("Filters", paragraphs=["top 25"]),
    ]


def test_report_escapes_text(tmp_path):
    out = write_report(tmp_path / "index.html", "Run <1>", _sections(tmp_path), subtitle="lines & cnn_basic")
    text = out.read_text(encoding="utf-8")
    assert "<script>" not in text
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; image 0" in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "Activations &lt;features.conv1&gt;" in text and "Run &lt;1&gt;" in text
    assert "lines &amp; cnn_basic" in text
    parsed = _parse(out)
    assert "script" not in parsed.tags  # no JavaScript at all
    assert not re.search(r"(src|href)=\"(https?:)?//", text)  # nothing from the network


def test_report_relative_image_paths_and_structure(tmp_path):
    out = write_report(tmp_path / "index.html", "Run", _sections(tmp_path))
    parsed = _parse(out)
    srcs = [a["src"] for t, a in parsed.attrs if t == "img"]
    assert srcs == ["figures/act%200.png", "figures/abs.png", "gradcam/angle.png"]
    # each image is also a link to itself (full size)
    hrefs = [a["href"] for t, a in parsed.attrs if t == "a"]
    for s in srcs:
        assert s in hrefs
    # table of contents anchors resolve to section ids
    ids = {a["id"] for _, a in parsed.attrs if "id" in a}
    for h in hrefs:
        if h.startswith("#"):
            assert h[1:] in ids
    text = out.read_text()
    assert "<figcaption>absolute path</figcaption>" in text
    assert '<td class="num">12.3%</td>' in text and '<td class="num">12,345</td>' in text  # sparsity: a share
    assert "<h3>Grad-CAM</h3>" in text
    assert "Observations" in text


def test_report_atomic_write(tmp_path, monkeypatch):
    path = tmp_path / "index.html"
    path.write_text("old report")

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(report.os, "replace", broken_replace)
    with pytest.raises(OSError):
        write_report(path, "Run", [Section("s")])
    assert path.read_text() == "old report"
    assert sorted(os.listdir(tmp_path)) == ["index.html"]  # temp file cleaned up
    monkeypatch.undo()
    write_report(path, "Run", [Section("s")])
    assert "old report" not in path.read_text()
    assert sorted(os.listdir(tmp_path)) == ["index.html"]


def test_sweep_index_links(tmp_path):
    sweep = tmp_path / "multirun" / "2024-01-01"
    run_dir = sweep / "0"
    run_dir.mkdir(parents=True)
    (run_dir / "index.html").write_text("run")
    runs = [
        {"label": "mnist / cnn_basic <a>", "href": "0/index.html", "summary": {"test acc": 0.99123, "epochs": 3}},
        {"label": "lines", "href": run_dir / "index.html", "accuracy": 1.0, "job": "gradcam"},
    ]
    out = write_sweep_index(sweep / "index.html", "Sweep", runs)
    parsed = _parse(out)
    links = [a["href"] for t, a in parsed.attrs if t == "a"]
    assert links == ["0/index.html", "0/index.html"]
    for link in links:
        assert (out.parent / link).is_file()  # links work from the sweep dir
    text = out.read_text()
    assert "mnist / cnn_basic &lt;a&gt;" in text
    for col in ("test acc", "epochs", "accuracy", "job"):
        assert f"<th>{col}</th>" in text
    assert "0.9912" in text and "gradcam" in text


def test_format_value():
    assert format_value(0.123456) == "0.1235"
    assert format_value(0.99996) == "0.99996"  # never rounds an accuracy up to "1"
    assert format_value(1.0) == "1"
    assert format_value(np.float32(0.25)) == "0.25"
    assert format_value(123456) == "123,456"
    assert format_value(7) == "7"
    assert format_value(float("nan")) == "\u2013"
    assert format_value(None) == ""
    assert format_value(2.5e-6) == "2.500e-06"
    assert format_value(True) == "yes"


def test_wide_figures_span_the_row(tmp_path):
    from PIL import Image

    Image.new("RGB", (300, 100)).save(tmp_path / "wide.png")
    Image.new("RGB", (100, 100)).save(tmp_path / "square.png")
    out = write_report(tmp_path / "index.html", "Run", [Section("s", figures=[
        Figure("wide.png", "three panels"), Figure("square.png", "one"), Figure("missing.png", "gone"),
        Figure("square.png", "forced", wide=True)])])
    classes = [(a["class"], a.get("width")) for t, a in _parse(out).attrs if t == "figure"]
    imgs = [(a.get("width"), a.get("height")) for t, a in _parse(out).attrs if t == "img"]
    assert [c for c, _ in classes] == ["card wide", "card", "card", "card wide"]
    assert imgs == [("300", "100"), ("100", "100"), (None, None), ("100", "100")]


def test_sweep_index_joins_evaluation_tables(tmp_path):
    import csv
    import json

    from pipeline.report.sweep import write_index_for

    sweep = tmp_path / "multirun" / "t"
    for name, job, model, rows in [
        ("0_evaluate_lines", "evaluate", "multihead",
         [{"method": "gradcam", "head": "angle", "pointing_game": 0.998, "sanity_top_layer": 0.23,
           "sanity_top_layer_each": [0.5, 0.1]}]),
        ("1_evaluate_lines", "evaluate", "cnn_basic",
         [{"method": "gradcam", "head": "class", "pointing_game": 0.61, "deletion_auc": 0.4}]),
        ("2_gradcam_lines", "gradcam", "multihead", None),
    ]:
        d = sweep / name
        d.mkdir(parents=True)
        (d / "index.html").write_text("run")
        (d / "summary.json").write_text(json.dumps({"job": job, "dataset": "lines", "model": model}))
        if rows is not None:
            (d / "evaluation.json").write_text(json.dumps(rows))
    out = write_index_for(sweep)
    text = out.read_text()
    assert "Measured explanations across runs" in text and "99.8%" in text and "cnn_basic" in text
    with open(sweep / "evaluation.csv") as f:
        table = list(csv.DictReader(f))
    assert [(r["run"], r["model"], r["head"]) for r in table] == [
        ("0_evaluate_lines", "multihead", "angle"), ("1_evaluate_lines", "cnn_basic", "class")]
    assert table[1]["deletion_auc"] == "0.4" and table[0]["deletion_auc"] == ""  # union of the columns
    assert "sanity_top_layer_each" not in table[0]                               # lists stay per run
    # a sweep without evaluate runs gets no table and no CSV
    other = tmp_path / "multirun" / "u" / "0_gradcam_lines"
    other.mkdir(parents=True)
    (other / "summary.json").write_text(json.dumps({"job": "gradcam"}))
    assert "Measured explanations" not in write_index_for(other.parent).read_text()
    assert not (other.parent / "evaluation.csv").exists()


def test_figures_are_shown_readable_and_link_to_full_size(tmp_path):
    """A figure is shown at its own pixel width (never shrunk into a narrow column, never narrower
    than MIN_SHOWN_PX) and the image is a link to the file itself."""
    from PIL import Image

    Image.new("RGB", (1540, 1450)).save(tmp_path / "confusion.png")
    Image.new("RGB", (120, 120)).save(tmp_path / "tiny.png")
    out = write_report(tmp_path / "index.html", "Run", [Section("s", figures=[
        Figure("confusion.png", "96 classes"), Figure("tiny.png", "small")])])
    parsed = _parse(out)
    cards = [a for t, a in parsed.attrs if t == "figure"]
    assert [c["style"] for c in cards] == [f"width:{1540 + report._CARD_PAD_PX}px",
                                          f"width:{report.MIN_SHOWN_PX + report._CARD_PAD_PX}px"]
    # every <img> sits in an <a> whose href is the image itself
    pairs = [(parsed.attrs[i - 1], parsed.attrs[i]) for i, (t, _) in enumerate(parsed.attrs) if t == "img"]
    assert [(a[0], a[1]["href"], img[1]["src"]) for a, img in pairs] == [
        ("a", "confusion.png", "confusion.png"), ("a", "tiny.png", "tiny.png")]
    assert "click for full size" in pairs[0][0][1]["title"]
    css = out.read_text()
    assert "grid-template-columns" not in css and "max-width:100%" in css  # shrunk only to fit the page
