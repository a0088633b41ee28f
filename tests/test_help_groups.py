"""Start-up cost of the entry scripts: ``--help`` lists config groups only where the help template
names them, and the config schemas are registered without the heavy libraries (the scripts' own
``--help`` output is checked in tests/test_cli.py)."""
from __future__ import annotations

import subprocess
import sys
from types import SimpleNamespace

from hydra._internal.hydra import Hydra

from pipeline.help_groups import _lazy_get_help, use_lazy_help
from tests.conftest import ROOT


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
