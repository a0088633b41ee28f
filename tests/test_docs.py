"""The README and docs/ stay true: the README is a short guide with the course's deliverables, every
relative link (and its #anchor) lands on an existing file and heading, and every command they show
composes with the config keys and options that exist today (Hydra's struct mode refuses a key that
is not in the config, so a renamed key breaks this test, not a user's first try)."""
from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, ListConfig

from pipeline.config import register_configs
from tests.conftest import CONF_DIR, ROOT

README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]
MAX_README_LINES = 250
SCRIPTS = {"train.py": "train", "visualize.py": "visualize", "eval.py": "eval"}


def _links(text: str) -> list[str]:
    """Targets of the Markdown links ``[text](target)`` outside code (inline ``code`` and indented blocks)."""
    prose = "\n".join(line for line in text.splitlines() if not line.startswith("    "))
    prose = re.sub(r"`[^`]*`", "", prose)
    return re.findall(r"\[[^\]]+\]\(([^)\s]+)\)", prose)


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"`", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    lines, in_code = [], False
    for line in path.read_text().splitlines():
        if line.startswith("```"):
            in_code = not in_code
        elif not in_code and re.match(r"#{1,6} ", line):
            lines.append(line.lstrip("#"))
    return {_slug(h) for h in lines}


def test_readme_is_a_short_guide_with_the_deliverables_table():
    lines = README.read_text().splitlines()
    assert len(lines) <= MAX_README_LINES, f"README.md has {len(lines)} lines; move reference text to docs/"
    start = lines.index("## Course deliverables")
    section = lines[start:next(i for i in range(start + 1, len(lines)) if lines[i].startswith("## "))]
    table = [line for line in section if line.startswith("|")]
    assert table[0].replace(" ", "") == "|deliverable|command|file|"
    body = "\n".join(table[2:]).lower()
    for must in ["learning curves", "f-scores", "confusion", "checkpoint", "activations of 6 images", "top-25",
                 "all 64 filters", "grad-cam for every head", "report", "_top25.png", "_all.png", "best.ckpt",
                 "figures/attribution/gradcam/", "index.html"]:
        assert must in body, f"the deliverables table lacks {must!r}"
    # the two commands, exactly
    text = README.read_text()
    assert "    pip install -r requirements.txt && python train.py && python visualize.py job=all\n" in text
    assert "    pip install -r requirements-dev.txt && python -m pytest -q\n" in text


def test_the_slug_and_link_parsers():
    assert _slug("Safety nets") == "safety-nets"
    assert _slug("Configuration and `--help`") == "configuration-and---help"
    assert _slug("Testing a checkpoint on another dataset (`eval.py`)") == "testing-a-checkpoint-on-another-dataset-evalpy"
    assert _links("see [a](docs/a.md#x), `[b](no.md)`\n    [c](code.md)\n[d](https://e.org)") == [
        "docs/a.md#x", "https://e.org"]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_lands_on_a_file_and_heading(page: Path):
    broken = []
    for target in _links(page.read_text()):
        if re.match(r"[a-z]+:", target):   # http:, https:, mailto:
            continue
        file, _, anchor = target.partition("#")
        dest = (page.parent / file).resolve() if file else page
        if not dest.exists():
            broken.append(f"{target}: no file {dest.relative_to(ROOT) if dest.is_relative_to(ROOT) else dest}")
        elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
            broken.append(f"{target}: no heading #{anchor} in {dest.name}")
    assert not broken, f"{page.name}: " + "; ".join(broken)


def test_every_docs_page_is_linked_from_the_readme():
    linked = {(README.parent / t.partition("#")[0]).resolve() for t in _links(README.read_text())}
    missing = [p.name for p in PAGES[1:] if p.resolve() not in linked]
    assert not missing, f"docs pages the README does not link: {missing}"


def _commands(page: Path) -> list[tuple[str, list[str]]]:
    """(script, overrides) of every ``python train.py|visualize.py|eval.py ...`` command in the page's
    code blocks (indented lines that start with ``python`` or ``pip``; ``\\`` continues a line; ``#``
    starts a comment)."""
    out, pending = [], ""
    for line in page.read_text().splitlines():
        if not pending and not (line.startswith("    ") and line.lstrip().startswith(("python ", "pip "))):
            continue   # prose, tables, Python code
        line = pending + line.strip()
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        pending = ""
        for part in line.split("&&"):
            words = shlex.split(part, comments=True)
            if len(words) >= 2 and words[0] == "python" and words[1] in SCRIPTS:
                out.append((words[1], words[2:]))
    return out


def _first_choice(override: str) -> str:
    """A sweep's ``key=a,b`` as its first value ``key=a`` (commas inside [...] or quotes kept)."""
    key, _, value = override.partition("=")
    depth, quote = 0, None
    for i, ch in enumerate(value):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "[{(":
            depth += 1
        elif ch in "]})":
            depth -= 1
        elif ch == "," and depth == 0:
            return f"{key}={value[:i]}"
    return override


def test_the_command_parser(tmp_path):
    assert _first_choice("model=cnn_basic,cnn_deep") == "model=cnn_basic"
    assert _first_choice("layer=[a,b]") == "layer=[a,b]"
    assert _first_choice("image=['a b.png','c (2).png']") == "image=['a b.png','c (2).png']"
    page = tmp_path / "page.md"
    page.write_text("Prose: python train.py x=1\n\n    pip install -r r.txt && python train.py dataset=mnist \\\n"
                    "        model=cnn_basic     # a comment\n    python eval.py --help\n")
    assert _commands(page) == [("train.py", ["dataset=mnist", "model=cnn_basic"]), ("eval.py", ["--help"])]


def _documented_commands() -> list[tuple[str, str, list[str]]]:
    """(page, script, overrides) of every documented command but ``--help``/``--cfg`` ones (checked in
    tests/test_help_groups.py); Hydra's own settings (``hydra/launcher=``, ``hydra.*``) left out."""
    out = []
    for page in PAGES:
        for script, args in _commands(page):
            if args and all(a.startswith("--") for a in args):
                continue
            overrides = [_first_choice(re.sub(r"<[^>]*>", "x", a)) for a in args
                         if "=" in a and not a.startswith("-") and not a.startswith(("hydra.", "hydra/"))]
            out.append((page.name, script, overrides))
    return out


DOCUMENTED = _documented_commands()


def _is_group(override: str) -> bool:
    key = override.partition("=")[0].lstrip("+~")
    return "/" in key or (CONF_DIR / key).is_dir()


def _by_choices() -> dict[tuple[str, tuple[str, ...]], list[tuple[str, list[str]]]]:
    """The documented commands by script and the group choices that change the config's keys (one
    composition each, ~1 s apiece; ``job=`` left out: visualize.py's config holds every job's block)."""
    out: dict = {}
    for page, script, overrides in DOCUMENTED:
        key = (script, tuple(sorted(o for o in overrides if _is_group(o) and not o.startswith("job="))))
        out.setdefault(key, []).append((page, [o for o in overrides if not _is_group(o)]))
    return out


BY_CHOICES = _by_choices()


def _has_key(cfg, dotted: str) -> bool:
    node = cfg
    for part in dotted.split("."):
        if isinstance(node, ListConfig) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        elif isinstance(node, DictConfig) and not node._is_none() and part in node.keys():   # ??? values too
            node = node._get_node(part)
            node = node._dereference_node() if node._is_interpolation() else node
        else:
            return False
    return True


def test_every_documented_group_option_exists():
    chosen = {o.lstrip("+") for _, _, overrides in DOCUMENTED for o in overrides if _is_group(o)}
    missing = [o for o in sorted(chosen) if not all((CONF_DIR / o.partition("=")[0] / f"{option}.yaml").is_file()
                                                    for option in o.partition("=")[2].strip("[]").split(","))]
    assert not missing, f"options the pages name that conf/ lacks: {missing}"


def test_the_pages_show_commands_of_every_script():
    assert {script for _, script, _ in DOCUMENTED} == set(SCRIPTS)
    assert sum(page == "README.md" for page, _, _ in DOCUMENTED) >= 15
    assert _is_group("dataset=mnist") and _is_group("hydra/launcher=joblib") and not _is_group("data.root=x")


@pytest.mark.parametrize("script,choices", list(BY_CHOICES), ids=[f"{s}:{' '.join(c)}" for s, c in BY_CHOICES])
def test_every_documented_command_names_existing_options_and_keys(script, choices, tmp_path):
    """Every group option a documented command picks exists (the config composes), and every key it sets
    is in the composed config (``+key=`` adds one on purpose); placeholders (``<time>`` as ``x``, ``PATH``,
    ``DIR``) are plain strings to the config."""
    register_configs()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            cfg = compose(config_name=SCRIPTS[script], overrides=[f"paths.root_dir={tmp_path}", *choices])
    finally:
        GlobalHydra.instance().clear()
    missing = [f"{page}: {o}" for page, overrides in BY_CHOICES[(script, choices)] for o in overrides
               if not o.startswith("+") and not _has_key(cfg, o.partition("=")[0])]
    assert not missing, f"keys not in the {script} config: {missing}"
