"""render.format / render.dpi: every figure saved through pipeline.rendering.output in the chosen
format and resolution, a png beside a pdf for the report, bad values refused before any work."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline.errors import ConfigError
from pipeline.rendering.evaluation_plots import plot_curves
from pipeline.rendering.figures import render_activation_figure, render_gradcam_sheet
from pipeline.rendering.output import FORMATS, configure_rendering, rendering, shown_file
from tests.conftest import TINY, run_cli

RNG = np.random.default_rng(0)


@pytest.fixture(autouse=True)
def default_rendering():
    configure_rendering(None)
    yield
    configure_rendering(None)


def _activation(path, **kw):
    return render_activation_figure(RNG.random((3, 28, 28)), RNG.random((8, 14, 14)), path, "t", **kw)


def test_png_default_keeps_each_figures_own_dpi_and_render_dpi_overrides_it(tmp_path):
    assert rendering().format == "png" and rendering().dpi is None
    own = _activation(tmp_path / "own.png", dpi=50)
    configure_rendering({"format": "png", "dpi": 100})
    doubled = _activation(tmp_path / "doubled.png", dpi=50)
    assert own == tmp_path / "own.png" and doubled == tmp_path / "doubled.png"
    w1, h1 = Image.open(own).size
    w2, h2 = Image.open(doubled).size
    assert abs(w2 - 2 * w1) <= 2 and abs(h2 - 2 * h1) <= 2


def test_pdf_writes_the_pdf_and_a_png_for_the_report(tmp_path):
    configure_rendering({"format": "pdf", "dpi": 60})
    shown = render_gradcam_sheet(RNG.random((2, 3, 28, 28)), RNG.random((2, 28, 28)), ["a", "b"], tmp_path / "sheet.png")
    assert shown == tmp_path / "sheet.png" and shown.is_file()
    assert (tmp_path / "sheet.pdf").read_bytes()[:5] == b"%PDF-"
    curves = plot_curves({"gradcam": np.linspace(1, 0, 5)[None].repeat(2, 0)}, tmp_path / "c.png", "curves")
    assert curves == tmp_path / "c.png" and (tmp_path / "c.pdf").is_file()


def test_svg_is_what_the_report_shows(tmp_path):
    configure_rendering({"format": "SVG", "dpi": None})
    shown = _activation(tmp_path / "a.png")
    assert shown == tmp_path / "a.svg" and not (tmp_path / "a.png").exists()
    assert b"<svg" in shown.read_bytes()[:2000]
    assert shown_file(tmp_path / "a.png") == shown and shown_file(tmp_path / "none.png") is None


@pytest.mark.parametrize("render, needle", [({"format": "jpg"}, "use one of png, pdf, svg"),
                                            ({"dpi": 0}, "render.dpi=0 is invalid"),
                                            ({"dpi": 5000}, "from 1 to 1200")])
def test_bad_settings_are_refused(render, needle):
    with pytest.raises(ConfigError, match=needle):
        configure_rendering(render)
    assert FORMATS == ("png", "pdf", "svg")


def test_cli_refuses_an_unknown_format_before_any_work(tmp_path):
    proc = run_cli("train.py", [f"paths.root_dir={tmp_path}", *TINY["lines"], "render.format=jpg"], cwd=tmp_path)
    assert proc.returncode == 2
    assert "render.format='jpg'" in proc.stderr and "png, pdf, svg" in proc.stderr and "Traceback" not in proc.stderr
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]


def test_every_figure_of_the_pipeline_is_saved_through_save_figure():
    """A new ``fig.savefig(...)`` elsewhere in pipeline/ would ignore render.format and render.dpi."""
    root = Path(__file__).resolve().parents[2] / "pipeline"
    offenders = [str(p.relative_to(root)) for p in root.rglob("*.py")
                 if ".savefig(" in p.read_text() and p.name != "output.py"]
    assert offenders == []


def test_a_long_title_on_a_narrow_sheet_is_wrapped_inside_the_figure(tmp_path, monkeypatch):
    """Two columns (gradcam.target=[top1,top2]) make a 4-inch sheet: its title wraps instead of being cut."""
    from pipeline.rendering import figures

    seen, real = [], figures._save

    def spy(fig, path, dpi):
        from matplotlib.backends.backend_agg import FigureCanvasAgg

        renderer = FigureCanvasAgg(fig).get_renderer()
        seen.append([(t.get_text(), t.get_window_extent(renderer)) for t in fig.texts])
        return real(fig, path, dpi)

    monkeypatch.setattr(figures, "_save", spy)
    title = "gradcam, head angle, layer features.conv3, image 0 (scans/a rather long file name.png)"
    render_gradcam_sheet(RNG.random((2, 3, 28, 28)), RNG.random((2, 28, 28)), ["top1: a", "top2: b"],
                         tmp_path / "s.png", ncols=2, title=title)
    (text, box), = [(t, b) for t, b in seen[0] if "gradcam" in t]
    width = Image.open(tmp_path / "s.png").size[0]
    assert "\n" in text and text.replace("\n", " ") == title
    assert box.x0 >= 0 and box.x1 <= width
