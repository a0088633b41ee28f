"""render_all: figures drawn by worker processes are the figures drawn in-process, in order, with the
render settings of the parent; a failing figure raises its own error; bad render.workers is refused."""
from __future__ import annotations

import multiprocessing

import numpy as np
import pytest
import torch

from pipeline.errors import ConfigError
from pipeline.rendering import output
from pipeline.rendering.figures import render_activation_figure, render_gradcam_figure
from pipeline.rendering.parallel import render_all, worker_count

pytestmark = pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(),
                                reason="worker processes need fork (elsewhere the calls run in-process)")

RNG = np.random.default_rng(0)


def _calls(tmp_path, tag):
    images = torch.rand(3, 3, 12, 12)
    acts = torch.randn(3, 8, 6, 6)
    calls = [(render_activation_figure, (images[i], acts[i], tmp_path / tag / f"act{i}.png", f"act {i}"),
              {"limits": (-3.0, 3.0)}) for i in range(3)]
    calls += [(render_gradcam_figure, (images[i], RNG.random((12, 12)), RNG.random((3, 3)),
                                       tmp_path / tag / f"cam{i}.png", f"cam {i}"), {"alpha": 0.6}) for i in range(3)]
    return calls


@pytest.fixture
def settings():
    saved = output.rendering()
    yield
    output._current = saved


def test_workers_draw_the_same_files_as_one_process(tmp_path, settings):
    calls = _calls(tmp_path, "x")
    output.configure_rendering({"workers": 1})
    serial = render_all([(fn, args, kw) for fn, args, kw in calls])
    output.configure_rendering({"workers": 2})
    again = [(fn, (*args[:-2], tmp_path / "p" / args[-2].name, args[-1]), kw) for fn, args, kw in calls]
    parallel = render_all(again)
    assert [p.name for p in parallel] == [p.name for p in serial]   # results in call order
    assert [p.parent for p in parallel] == [tmp_path / "p"] * len(calls)
    for a, b in zip(serial, parallel):
        assert a.read_bytes() == b.read_bytes(), a.name


def test_workers_use_the_parents_render_settings(tmp_path, settings):
    output.configure_rendering({"workers": 2, "format": "svg"})
    paths = render_all(_calls(tmp_path, "svg"))
    assert {p.suffix for p in paths} == {".svg"}
    assert all(p.is_file() for p in paths)
    assert not list((tmp_path / "svg").glob("*.png"))


def test_a_failing_figure_raises_its_error(tmp_path, settings):
    output.configure_rendering({"workers": 2})
    calls = _calls(tmp_path, "bad")
    calls.insert(2, (render_activation_figure, (torch.rand(3, 12, 12), torch.rand(2, 2, 2, 2), tmp_path / "b.png", "t"), {}))
    with pytest.raises(ValueError, match="activations must be"):
        render_all(calls)


def test_worker_count():
    assert worker_count(4, 1) == 1           # one figure: no pool
    assert worker_count(4, 10) == 4
    assert worker_count(1, 10) == 1
    assert worker_count(None, 100) == torch.get_num_threads() or torch.get_num_threads() > 100


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2"])
def test_bad_workers_value_is_refused(bad, settings):
    with pytest.raises(ConfigError, match="render.workers"):
        output.configure_rendering({"workers": bad})


def test_calls_that_cannot_be_pickled_run_here_instead_of_hanging(tmp_path, settings):
    output.configure_rendering({"workers": 2})
    calls = _calls(tmp_path, "mixed")
    local = []
    calls.insert(1, (lambda x: local.append(x) or x, (5,), {}))     # a lambda cannot cross to a worker
    results = render_all(calls)
    assert results[1] == 5 and local == [5]
    assert all(p.is_file() for i, p in enumerate(results) if i != 1)
