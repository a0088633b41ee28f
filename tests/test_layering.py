"""The packages call down only: the visualize run (pipeline/visualize_run.py) sits above the jobs it
runs (pipeline/jobs/), and the jobs above the primitives they use (pipeline/visualization/,
attribution/, rendering/, storage/, report/, ...). A lower package that imported a higher one would
send a run's config back up (issue 28)."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PIPELINE = Path(__file__).resolve().parents[1] / "pipeline"
LOWER = ["visualization", "attribution", "rendering", "storage", "report", "evaluation", "data", "models"]


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _above(name: str, higher: tuple[str, ...]) -> bool:
    return any(name == h or name.startswith(h + ".") for h in higher)


@pytest.mark.parametrize("package", LOWER)
def test_primitives_never_import_the_jobs_or_the_run(package):
    bad = {f"{p.relative_to(PIPELINE)}: {n}" for p in (PIPELINE / package).rglob("*.py")
           for n in _imports(p) if _above(n, ("pipeline.jobs", "pipeline.visualize_run"))}
    assert not bad, f"pipeline/{package} imports a higher layer: {sorted(bad)}"


def test_jobs_never_import_the_run():
    bad = {str(p.relative_to(PIPELINE)) for p in (PIPELINE / "jobs").rglob("*.py")
           if any(_above(n, ("pipeline.visualize_run",)) for n in _imports(p))}
    assert not bad, f"jobs import the run that runs them: {sorted(bad)}"


def test_the_check_sees_an_upward_import(tmp_path):
    f = tmp_path / "x.py"
    f.write_text("def f():\n    from pipeline.jobs.base import build_jobs\n")
    assert _above(next(iter(_imports(f))), ("pipeline.jobs",))
