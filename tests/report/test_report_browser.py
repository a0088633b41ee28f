"""The train and visualize reports of tiny runs, opened in headless Chromium (tests/browser.py) as
a reader opens them, at 1400 x 900 CSS px: every picture loads, every link of the contents lands
on its section (and the contents stay in view), the page opens with what the run delivers, the
folded parts are closed, and the page is at most 15 screens tall. Screenshots (the first screen,
the whole page) are written to the folder the test prints ($CNNVIS_TEST_ARTIFACTS/<test> when
set, else pytest's tmp folder)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.browser import Browser, BrowserMissing, artifact_dir, chromium_path
from tests.conftest import TINY, compose_cfg

WIDTH, HEIGHT = 1400, 900
MAX_SCREENS = 15
FAST_FILTERS = ["filters.steps=8", "filters.max_filters=6", "filters.top=4"]

pytestmark = pytest.mark.skipif(chromium_path() is None,
                                reason="no chromium on PATH: .ci/run installs Debian's chromium package "
                                       "(apt-get install -y chromium); CNNVIS_CHROMIUM names another binary")


@pytest.fixture(scope="module")
def browser():
    try:
        with Browser() as b:
            yield b
    except BrowserMissing as e:  # pragma: no cover - the skipif above catches it first
        pytest.skip(str(e))


@pytest.fixture(scope="module")
def reports(tiny_trained):
    """The tiny multihead run's training report and the report of ``visualize.py job=all`` on it."""
    from pipeline.visualize_run import run_visualize

    root, runs = tiny_trained
    cfg = compose_cfg(root, [*TINY["lines"], "search_cut_short=true", "job=all", "ckpt="
                             + str(runs[("lines", "multihead")]["best_checkpoint"]), *FAST_FILTERS],
                      config_name="visualize")
    summary = run_visualize(cfg)
    train_report = Path(runs[("lines", "multihead")]["best_checkpoint"]).parents[1] / "index.html"
    return {"train": train_report, "visualize": Path(summary["report"]), "summary": summary}


# the page's own numbers, read in the browser
_LAYOUT = """(() => {
    const de = document.documentElement;
    const nav = document.querySelector('nav.toc');
    const first = document.querySelector('main section');
    const r = first ? first.getBoundingClientRect() : null;
    return {height: Math.max(de.scrollHeight, document.body.scrollHeight), inner: innerHeight,
            firstId: first ? first.id : null, firstTop: r && r.top, firstBottom: r && r.bottom,
            navPosition: nav ? getComputedStyle(nav).position : null,
            openDetails: document.querySelectorAll('details[open]').length,
            details: document.querySelectorAll('details').length,
            links: Array.from(document.querySelectorAll('nav.toc a')).map(a => a.getAttribute('href'))};
})()"""

_LANDED = """((id) => {
    const el = document.getElementById(id);
    if (!el) return {missing: true};
    const r = el.getBoundingClientRect();
    const maxScroll = document.documentElement.scrollHeight - innerHeight;
    const nav = document.querySelector('nav.toc').getBoundingClientRect();
    const header = document.querySelector('header').getBoundingClientRect();
    return {top: r.top, bottom: r.bottom, height: r.height, hash: location.hash, scrollY: scrollY, maxScroll: maxScroll,
            visible: el.checkVisibility(), navTop: nav.top, headerBottom: header.bottom};
})"""


def _check_page(browser, page_path: Path, out: Path, name: str) -> dict:
    """Open ``page_path`` and check what every report must do; return its layout numbers."""
    page = browser.new_page(WIDTH, HEIGHT)
    page.open(page_path)
    images = page.load_all_images()   # lazy ones too: the page as a reader sees it once the pictures are in
    layout = page.evaluate(_LAYOUT)
    page.screenshot(out / f"{name}_first_screen.png")
    page.screenshot(out / f"{name}_full_page.png", full_page=True)
    print(f"{name}: {page_path}: {layout['height']} px tall ({layout['height'] / HEIGHT:.1f} screens of {HEIGHT} px), "
          f"{len(layout['links'])} contents links; screenshots in {out}")

    # folded parts closed, and the page at most MAX_SCREENS screens so
    assert layout["openDetails"] == 0
    assert layout["height"] <= MAX_SCREENS * HEIGHT, f"{name} is {layout['height'] / HEIGHT:.1f} screens tall"
    # the contents stay in view (a sticky side bar) and every one of its links lands on its section
    assert layout["navPosition"] == "sticky"
    assert layout["links"] and all(h.startswith("#") for h in layout["links"])
    for href in layout["links"]:
        page.click(f"nav.toc a[href='{href}']")
        landed = page.wait_for(f"(() => location.hash === {json.dumps(href)} && ({_LANDED})({json.dumps(href[1:])}))()",
                               timeout=5)
        assert not landed.get("missing"), f"{href}: no element with that id"
        assert landed["visible"], f"{href}: the section is hidden (inside a closed part?)"
        # at the top of the window, or the page scrolled to its end with the section in view
        at_top = abs(landed["top"]) <= 2
        at_end = landed["scrollY"] >= landed["maxScroll"] - 2 and 0 <= landed["top"] < HEIGHT
        assert at_top or at_end, f"{href} landed at {landed['top']:.0f} px (scrolled {landed['scrollY']})"
        # the contents bar stays at the window's top (below the title while that is in view)
        assert abs(landed["navTop"] - max(0, landed["headerBottom"])) <= 1, f"the contents left the window at {href}"
    # every picture loads, the folded ones included
    assert images
    broken = [im["src"] for im in images if not im["naturalWidth"]]
    assert not broken, f"{len(broken)} of {len(images)} pictures did not load: {broken[:5]}"
    errors = page.errors()
    assert not errors, errors
    return layout


def test_visualize_report_in_a_browser(browser, reports, tmp_path):
    out = artifact_dir("visualize_report", tmp_path)
    layout = _check_page(browser, reports["visualize"], out, "visualize")
    # it opens with the deliverables, whole within the first screen
    assert layout["firstId"] == "deliverables"
    assert 0 <= layout["firstTop"] and layout["firstBottom"] <= HEIGHT, layout
    # the job sections and the model section are reachable from the contents
    for anchor in ("#deliverables", "#images", "#activations", "#filters", "#gradcam", "#model"):
        assert anchor in layout["links"]
    # a card per job, each leading to its section
    page = browser.new_page(WIDTH, HEIGHT)
    page.open(reports["visualize"])
    cards = page.evaluate("Array.from(document.querySelectorAll('#deliverables figure a')).map(a => a.getAttribute('href'))")
    assert {"#activations", "#filters", "#gradcam"} <= set(cards)
    page.click("#deliverables figure a[href='#gradcam']")
    top = page.wait_for("location.hash === '#gradcam' && document.getElementById('gradcam').getBoundingClientRect().top + 1")
    assert abs(top - 1) <= 2
    # opening a folded part shows its pictures, and the page grows
    page.open(reports["visualize"])
    before = page.scroll_height()
    page.click("section.folded > details > summary")
    assert page.evaluate("document.querySelector('section.folded > details').open") is True
    assert page.scroll_height() > before


def test_train_report_in_a_browser(browser, reports, tmp_path):
    out = artifact_dir("train_report", tmp_path)
    layout = _check_page(browser, reports["train"], out, "train")
    assert layout["firstId"] == "result" and layout["firstTop"] < HEIGHT
