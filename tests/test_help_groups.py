"""The entry scripts' ``--help``: one screen (examples, the script's config groups, where output goes;
the composed config only with ``--cfg job``), and its start-up cost: config groups are listed only
where the help template names them, and the config schemas are registered without the heavy
libraries (which groups each script lists is checked in tests/test_cli.py)."""
from __future__ import annotations

import re
import subprocess
import sys
from types import SimpleNamespace

import pytest
import yaml
from hydra._internal.hydra import Hydra

from pipeline.help_groups import INTERNAL_PREFIX, _lazy_get_help, use_lazy_help
from tests.conftest import CONF_DIR, ROOT, run_cli

MAX_HELP_LINES = 60
HYDRA_CONF = {"train.py": "default", "visualize.py": "visualize", "eval.py": "eval"}   # conf/hydra/<name>.yaml


class _FakeHydra:
    """What get_help calls on Hydra, counting the calls that list config groups."""

    def __init__(self):
        self.listed = []

    def format_args_help(self, parser):
        return "FLAGS"

    def format_config_groups(self, predicate):
        kind = "hydra" if predicate("hydra/launcher") else "app"
        self.listed.append(kind)
        return f"<{kind} groups>"


def test_help_lists_all_config_groups_only_where_the_template_names_them():
    cfg = {"a": 1}
    hydra = _FakeHydra()
    text = _lazy_get_help(hydra, SimpleNamespace(template="head $FLAGS_HELP\n$CONFIG tail $$"), cfg, None, False)
    assert text == "head FLAGS\na: 1\n tail $" and hydra.listed == []
    text = _lazy_get_help(hydra, SimpleNamespace(template="$APP_CONFIG_GROUPS|$HYDRA_CONFIG_GROUPS"), cfg, None, False)
    assert text == "<app groups>|<hydra groups>" and sorted(hydra.listed) == ["app", "hydra"]


def test_lazy_help_is_installed_once():
    use_lazy_help()
    use_lazy_help()
    assert Hydra.get_help is _lazy_get_help


def test_registering_the_configs_imports_no_heavy_library():
    """pytorch_lightning (torch._dynamo with it), matplotlib and h5py are imported by the code that uses
    them, not by the entry scripts' config registration, which every command and --help pays."""
    heavy = ["pytorch_lightning", "torch._dynamo", "torchmetrics", "matplotlib", "h5py"]
    code = ("import sys; from pipeline.config import register_configs; register_configs(); "
            f"print([m for m in {heavy!r} if m in sys.modules])")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "[]"


def _run_dir_in_words(script: str, kind: str) -> str:
    """conf/hydra/<name>.yaml's ``run.dir`` (or ``sweep.dir``) as --help should spell it:
    ``${paths.outputs_dir}/${task}/${data.name}/${now:...}`` -> ``outputs/<task>/<dataset>/<time>/``."""
    spec = yaml.safe_load((CONF_DIR / "hydra" / f"{HYDRA_CONF[script]}.yaml").read_text())[kind]["dir"]
    words = {"paths.outputs_dir": "outputs", "task": script.removesuffix(".py"), "data.name": "<dataset>",
             "model.name": "<model>", "job.name": "<job>"}
    return re.sub(r"\$\{([^}:]+)(:[^}]*)?\}", lambda m: "<time>" if m[1] == "now" else words[m[1]], spec) + "/"


@pytest.mark.parametrize("script", list(HYDRA_CONF))
def test_help_is_one_screen_with_groups_and_where_output_goes(script, tmp_path):
    proc = run_cli(script, ["--help"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    text = proc.stdout.rstrip("\n")
    assert len(text.splitlines()) <= MAX_HELP_LINES, text
    assert "Examples:" in text and f"python {script} --cfg job" in text
    # where output goes: the run directory (and a sweep's) that conf/hydra/<name>.yaml sets
    assert "== Where output goes ==" in text
    assert _run_dir_in_words(script, "run") in text, (_run_dir_in_words(script, "run"), text)
    assert _run_dir_in_words(script, "sweep").removesuffix("/") in text
    # the groups, each with every option that conf/<group>/ holds
    block = text.split("== Config groups of this script (group=option) ==")[1].split("== Config ==")[0]
    listed = dict(line.split(": ", 1) for line in block.strip().splitlines())
    assert {"dataset", "paths", "render"} <= set(listed), listed
    for group, options in listed.items():
        files = sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml") if not p.stem.startswith(INTERNAL_PREFIX))
        assert options.split(", ") == files, (group, options, files)
    # no config dump: that is --cfg job's
    assert "_target_" not in text and "batch_size:" not in text


@pytest.mark.parametrize("script", list(HYDRA_CONF))
def test_cfg_job_prints_the_composed_config(script, tmp_path):
    proc = run_cli(script, ["--cfg", "job", "dataset=mnist"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    cfg = yaml.safe_load(proc.stdout)
    assert cfg["task"] == script.removesuffix(".py") and cfg["data"]["name"] == "mnist"
    assert cfg["data"]["_target_"].startswith("pipeline.data.")
    if script == "eval.py":
        assert cfg["ckpt"] == "???"   # required: the one key a user must give
