"""visualize warns when a lines model is shown test images of another style than it learned."""
from __future__ import annotations

import logging
from types import SimpleNamespace

from pipeline.visualization.context import _warn_other_style


def _run_dir(tmp_path, style_line: str):
    (tmp_path / "config.yaml").write_text(f"data:\n  name: lines\n{style_line}")
    return tmp_path


def test_warns_on_another_style(tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        _warn_other_style(_run_dir(tmp_path, "  style: sheet\n"), SimpleNamespace(style="course"))
    assert "trained on data.style=sheet" in caplog.text and "data.style=course" in caplog.text
    assert "pass data.style=sheet" in caplog.text


def test_runs_from_before_styles_were_sheet(tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        _warn_other_style(_run_dir(tmp_path, ""), SimpleNamespace(style="sheet"))
    assert caplog.text == ""
    with caplog.at_level(logging.WARNING):
        _warn_other_style(_run_dir(tmp_path, ""), SimpleNamespace(style="course"))
    assert "trained on data.style=sheet" in caplog.text


def test_silent_for_the_same_style_and_other_datasets(tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        _warn_other_style(_run_dir(tmp_path, "  style: course\n"), SimpleNamespace(style="course"))
        _warn_other_style(_run_dir(tmp_path, "  style: course\n"), SimpleNamespace(name="mnist"))
        _warn_other_style(None, SimpleNamespace(style="course"))
    assert caplog.text == ""
