"""How a report is laid out to be read, not scrolled (pipeline/report/html.py, deliverables.py):
folded sections and figures are closed <details>, the contents are a side bar, the page opens with
a card per job (its key figure, numbers and a link to its section), the main figure is the most
informative one, per-image figures beside a sheet of every image are folded, pictures in table
cells, percentages in one style. The browser's view of the same: tests/report/test_report_browser.py."""
from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

from PIL import Image

from pipeline.report.deliverables import (compact, deliverables_section, fold_extra_jobs, format_key_number, key_figure,
                                          main_figure)
from pipeline.report.html import write_report
from pipeline.report.sections import Figure, Section, Table, format_percent


class _Tree(HTMLParser):
    """Start tags with their attributes and the stack of open elements at each."""

    def __init__(self):
        super().__init__()
        self.stack, self.seen = [], []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.seen.append((tag, a, [(t, dict(x)) for t, x in self.stack]))
        if tag not in ("img", "br", "meta"):
            self.stack.append((tag, attrs))

    def handle_endtag(self, tag):
        while self.stack:
            if self.stack.pop()[0] == tag:
                break


def _tree(path) -> _Tree:
    t = _Tree()
    t.feed(Path(path).read_text(encoding="utf-8"))
    return t


def _png(path: Path, size=(40, 30)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, "white").save(path)
    return path


def _inside(ancestors, tag) -> list[dict]:
    return [a for t, a in ancestors if t == tag]


def test_folded_sections_and_figures_are_closed_details(tmp_path):
    a, b, c = (_png(tmp_path / f"{n}.png") for n in "abc")
    out = write_report(tmp_path / "index.html", "Run", [
        Section("Open", figures=[Figure(a, "open one"), Figure(b, "folded one", folded=True)]),
        Section("Shut", folded=True, figures=[Figure(c, "in a folded section")]),
    ])
    t = _tree(out)
    imgs = {x["alt"]: anc for tag, x, anc in t.seen if tag == "img"}
    assert not _inside(imgs["open one"], "details")
    (more,) = _inside(imgs["folded one"], "details")
    assert more["class"] == "more" and "open" not in more
    (fold,) = _inside(imgs["in a folded section"], "details")
    assert fold["class"] == "fold" and "open" not in fold
    text = out.read_text()
    assert "1 more figure (click to open)" in text and "1 figure, folded: click to open" in text
    # no <details> is open by default anywhere
    assert not [x for tag, x, _ in t.seen if tag == "details" and "open" in x]


def test_contents_are_a_side_bar_beside_the_page_and_link_every_section(tmp_path):
    out = write_report(tmp_path / "index.html", "Run", [
        Section("First", anchor="first"), Section("Second", subsections=[Section("Inner")]),
        Section("Shut", folded=True)])
    t = _tree(out)
    nav = [(x, anc) for tag, x, anc in t.seen if tag == "nav"]
    assert len(nav) == 1 and _inside(nav[0][1], "div") == [{"class": "page"}]
    links = [x["href"] for tag, x, anc in t.seen if tag == "a" and _inside(anc, "nav")]
    ids = [x["id"] for tag, x, _ in t.seen if tag == "section"]
    assert links == ["#first", "#second", "#inner", "#shut"] and ids == ["first", "second", "inner", "shut"]
    css = out.read_text()
    assert "position:sticky" in css and "(folded)" in css


def test_key_figures_main_figure_and_the_deliverables_cards(tmp_path):
    run = tmp_path / "run"
    f = run / "figures"
    acts = Section("Intermediate activations", anchor="activations", key_numbers={"sparsity features.relu3": 0.6234},
                   subsections=[Section("Layer conv1", folded=True, figures=[Figure(_png(f / "act/conv1/image00.png"))]),
                                Section("Layer relu1", figures=[Figure(_png(f / "act/relu1/image00.png"), "relu1, image 0"),
                                                                Figure(_png(f / "act/relu1/image01.png"))])])
    filters = Section("Filter patterns", anchor="filters", subsections=[
        Section(n, figures=[Figure(_png(f / f"filters/features.{n}_channel_top4.png")),
                            Figure(_png(f / f"filters/features.{n}_channel_all.png"))]) for n in ("conv1", "conv3")]
        + [Section("heads.angle (class)", figures=[Figure(_png(f / "filters/heads.angle_class_all.png"))])])
    cam = Section("Grad-CAM", anchor="gradcam", key_numbers={"mean energy on the line": 0.5, "mean pointing game": 1.0},
                  subsections=[Section(f"head {h}", figures=[Figure(_png(f / f"att/gradcam/{h}/conv3/sheet.png")),
                                                             Figure(_png(f / f"att/gradcam/{h}/conv3/image00.png"))])
                               for h in ("angle", "length")])
    jobs = [("activations", acts), ("filters", filters), ("gradcam", cam)]
    assert key_figure("activations", acts).path == f / "act/relu1/image00.png"       # the first open layer
    assert key_figure("filters", filters).path == f / "filters/features.conv3_channel_top4.png"  # deepest top-k
    assert key_figure("gradcam", cam).path == f / "att/gradcam/angle/conv3/sheet.png"
    every_head = Section("gradcam: every head side by side", figures=[
        Figure(_png(f / f"att/gradcam/all_heads/conv3/image0{i}.png")) for i in range(2)])
    assert key_figure("gradcam", Section("Grad-CAM", subsections=[every_head, *cam.subsections])).path \
        == f / "att/gradcam/all_heads/conv3/image00.png"                             # a multi-head model
    # the run's thumbnail: Grad-CAM before filters before activations, whatever the jobs' order
    assert main_figure(jobs, run) == "figures/att/gradcam/angle/conv3/sheet.png"
    assert main_figure(jobs[:2], run) == "figures/filters/features.conv3_channel_top4.png"
    assert main_figure(jobs[:1], run) == "figures/act/relu1/image00.png"

    cards = deliverables_section(jobs, run)
    assert cards.anchor == "deliverables"
    assert [c.href for c in cards.figures] == ["#activations", "#filters", "#gradcam"]
    assert [c.path for c in cards.figures] == [key_figure(j, s).path for j, s in jobs]
    assert "sparsity features.relu3: 62.3%" in cards.figures[0].caption
    assert "mean pointing game: 100%" in cards.figures[2].caption
    assert "(5 figures in the section)" in cards.figures[1].caption
    # written: each card's picture links to its section, not to the file
    out = write_report(run / "index.html", "Run", [cards, *[s for _, s in jobs]])
    hrefs = [x["href"] for tag, x, anc in _tree(out).seen if tag == "a" and any(
        a.get("id") == "deliverables" for t, a in anc if t == "section")]
    assert hrefs == ["#activations", "#filters", "#gradcam"]


def test_compact_folds_per_image_figures_and_full_grids_beside_a_top_k():
    sheet = Section("head angle", figures=[Figure("x/sheet.png"), Figure("x/image00.png"), Figure("x/image01.png")])
    run = Section("layer relu1", figures=[Figure(f"y/image0{i}.png") for i in range(6)])
    pair = Section("layer relu2", figures=[Figure("z/image00.png"), Figure("z/image01.png")])
    grids = Section("conv3", figures=[Figure("f/features.conv3_channel_top25.png"), Figure("f/features.conv3_channel_all.png"),
                                      Figure("f/heads.length_class_all.png")])
    compact([Section("top", subsections=[sheet, run, pair, grids])])
    assert [f.folded for f in sheet.figures] == [False, True, True]
    assert [f.folded for f in run.figures] == [False] + [True] * 5
    assert [f.folded for f in pair.figures] == [False, False]
    assert [f.folded for f in grids.figures] == [False, True, False]   # no top-k of the length head: its grid stays


def test_pictures_in_table_cells_are_thumbnails_linking_to_the_file(tmp_path):
    pic = _png(tmp_path / "figures" / "inputs" / "image00_short_thin_45deg_red.png", (112, 112))
    out = write_report(tmp_path / "index.html", "Run", [Section("Images", tables=[
        Table("images", ["", "image", "true class"], [[Figure(pic, "image 0: short thin 45° red"), 0, "short thin 45° red"]])])])
    t = _tree(out)
    (img,) = [(x, anc) for tag, x, anc in t.seen if tag == "img"]
    assert img[0]["src"] == "figures/inputs/image00_short_thin_45deg_red.png" and img[0]["alt"] == "image 0: short thin 45° red"
    assert _inside(img[1], "td") == [{"class": "pic"}]
    assert _inside(img[1], "a")[0]["href"] == img[0]["src"]


def test_percentages_have_one_style(tmp_path):
    assert [format_percent(v) for v in (0.6234, 0.0, 1.0, 0.05, 0.999)] == ["62.3%", "0%", "100%", "5.0%", "99.9%"]
    assert format_key_number("sparsity features.conv1", 0.25) == "25.0%"
    assert format_key_number("mean pointing game", 1.0) == "100%"
    assert format_key_number("heads.angle: mean p of own class", 0.9731) == "0.9731"  # a probability stays one
    assert format_key_number("lowest at", "brightness x0.7") == "brightness x0.7"
    # a table's share columns read as the sentences beside them; other numbers as they were
    out = write_report(tmp_path / "index.html", "Run", [Section("Acts", tables=[Table(
        "per layer", ["layer", "sparsity (zeros)", "mean", "dead channels", "line's share of the image", "ratio to chance"],
        [["relu1", 0.6234, 0.25, 0.0, 0.0531, 1.5]])])])
    cells = re.findall(r"<td[^>]*>([^<]*)</td>", out.read_text())
    assert cells == ["relu1", "62.3%", "0.25", "0%", "5.3%", "1.5"]


def test_a_figure_taller_than_the_window_is_folded(tmp_path):
    tall, short = _png(tmp_path / "tall.png", (600, 2400)), _png(tmp_path / "short.png", (600, 900))
    out = write_report(tmp_path / "index.html", "Run", [Section("Units", figures=[Figure(tall, "tall"), Figure(short, "short")])])
    imgs = {x["alt"]: anc for tag, x, anc in _tree(out).seen if tag == "img"}
    assert _inside(imgs["tall"], "details") and not _inside(imgs["short"], "details")
    assert "1 more figure, taller than the window (click to open)" in out.read_text()


def test_the_first_observations_are_open_the_rest_folded(tmp_path):
    obs = [f"observation {i}" for i in range(8)]
    out = write_report(tmp_path / "index.html", "Run", [Section("Grad-CAM", observations=obs)])
    text = out.read_text()
    shown, folded = text.split('<details class="more">')
    assert all(f"<li>observation {i}</li>" in shown for i in range(3))
    assert all(f"<li>observation {i}</li>" in folded for i in range(3, 8)) and "5 more observations" in folded


def test_a_long_table_is_folded_unless_its_section_is(tmp_path):
    rows = [[f"layer{i}", i] for i in range(20)]
    out = write_report(tmp_path / "index.html", "Run", [
        Section("Open", tables=[Table("Explained class per image", ["layer", "n"], rows),
                                Table("Short", ["layer", "n"], rows[:3])]),
        Section("Layers", folded=True, tables=[Table("Layers", ["layer", "n"], rows)])])
    t = _tree(out)
    tables = [anc for tag, x, anc in t.seen if tag == "table"]
    assert [[d["class"] for d in _inside(anc, "details")] for anc in tables] == [["more"], [], ["fold"]]
    assert "Explained class per image: 20 rows (click to open)" in out.read_text()


def test_jobs_beyond_the_deliverables_are_folded_in_a_report_of_several():
    jobs = [(n, Section(n)) for n in ("activations", "filters", "gradcam", "units")]
    fold_extra_jobs(jobs)
    assert [s.folded for _, s in jobs] == [False, False, False, True]
    alone = [("units", Section("units"))]
    fold_extra_jobs(alone)
    assert not alone[0][1].folded


def test_a_first_layers_unit_pictures_fold_beside_its_kernels():
    kernels = Section("features.conv1 (kernels)", figures=[Figure("f/features.conv1_kernels.png")])
    neuron = Section("features.conv1 (neuron)", figures=[Figure("f/features.conv1_neuron_all.png")])
    conv2 = Section("features.conv2 (channel)", figures=[Figure("f/features.conv2_channel_top25.png"),
                                                         Figure("f/features.conv2_channel_all.png")])
    compact([Section("Filters", subsections=[kernels, neuron, conv2])])
    assert [s.folded for s in (kernels, neuron, conv2)] == [False, True, False]
    # MNIST's cnn_basic: the kernels are then the filters' key figure (not the folded top-k of conv1)
    one = Section("Filters", subsections=[
        Section("conv1 (kernels)", figures=[Figure("f/features.conv1_kernels.png")]),
        Section("conv1 (neuron)", figures=[Figure("f/features.conv1_neuron_top25.png"), Figure("f/features.conv1_neuron_all.png")]),
        Section("classifier (class)", figures=[Figure("f/classifier_class_all.png")])])
    compact([one])
    assert Path(key_figure("filters", one).path).name == "features.conv1_kernels.png"


def test_a_deliverables_card_is_never_folded_as_tall(tmp_path):
    tall = _png(tmp_path / "units.png", (600, 2400))
    out = write_report(tmp_path / "index.html", "Run", [Section("Deliverables", figures=[
        Figure(tall, "units", href="#units", max_width=420)])])
    assert "<details" not in out.read_text()
