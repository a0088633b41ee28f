"""Check an entry script's command line before Hydra runs anything: bad input exits 2 with one message.

Hydra reports its own errors (an argument it cannot parse, an option that does not exist, a key
of the wrong type) with exit status 1, its own text and, for an unknown option, a listing that
offers the internal ``base_*`` schemas; a sweep (``-m``) with one bad combination creates its
sweep folder and fails only when that job's turn comes. :func:`check_command_line` runs first
(each entry script calls it before ``main()``) and refuses, with exit status 2 and nothing written:

- an argument the override grammar cannot read (an unquoted path with brackets, ...): it names the
  argument and how to quote it;
- an internal schema chosen as an option (``dataset=base_lines``);
- a config that does not compose (an unknown option, key or type), for a sweep every combination,
  all bad ones reported at once before the first job runs.

Options it does not handle (``--help``, ``--cfg``, ``-cp``/``-cn``/``-cd``, shell completion) go
to Hydra untouched, as does a sweep whose sweeper is not Hydra's basic one (Optuna: the search space
is the sweeper's); then only the first two checks run.
"""
from __future__ import annotations

import sys
from pathlib import Path

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"
#: config groups whose ``base_*`` options are schemas for the YAML files to extend, not choices
INTERNAL_PREFIX = "base_"
SHOWN = 8


class CommandLineError(Exception):
    """The command line cannot run; the message says which argument and what to do."""


def _hydra_text(exc: Exception) -> str:
    """Hydra's message without its search-path dump and with the internal options left out."""
    text = str(exc).split("\nConfig search path:")[0].strip()
    cause = exc.__cause__
    if cause is not None and str(cause).strip() and str(cause).strip() not in text:
        text = f"{text}: {str(cause).strip()}"  # "Error merging override k=v": the reason is the cause
    lines = [ln for ln in text.splitlines() if not ln.strip().startswith(INTERNAL_PREFIX)]
    return "\n".join(lines).strip()


def _quote_hint(arg: str) -> str:
    key, _, value = arg.partition("=")
    if not _:
        return f"pass it as key=value, e.g. {arg}=VALUE"
    return (f"if {value} is a single value (a path or text with brackets, commas, spaces or quotes), quote it for "
            f"Hydra inside the shell's quotes: '{key}=\"{value}\"' (a list is written {key}=[a,b])")


def parse_arguments(overrides: list[str]):
    """The parsed overrides; an argument the grammar cannot read raises :class:`CommandLineError` naming it."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    parser = OverridesParser.create()
    parsed = []
    for arg in overrides:
        try:
            parsed.extend(parser.parse_overrides([arg]))
        except OverrideParseException as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise CommandLineError(f"cannot read the argument {arg!r} ({reason}); {_quote_hint(arg)}") from None
    return parsed


def _options(group: str) -> list[str]:
    folder = CONF_DIR / group
    return sorted(p.stem for p in folder.glob("*.yaml") if not p.stem.startswith(INTERNAL_PREFIX))


def check_no_internal_choice(parsed) -> None:
    for o in parsed:
        key = o.key_or_group
        if o.package or "." in key or key.startswith(("hydra", "+hydra")):
            continue
        values = list(o.sweep_string_iterator()) if o.is_discrete_sweep() else [o.get_value_element_as_str()]
        bad = [v for v in values if str(v).startswith(INTERNAL_PREFIX)]
        if bad:
            group = key.lstrip("+~")
            raise CommandLineError(
                f"{group}={bad[0]} is an internal schema that the {group} configs extend, not an option to choose. "
                f"Use one of: {', '.join(_options(group))}")


def combinations(parsed) -> list[list[str]]:
    """Every job's overrides of a basic sweep, in Hydra's order (one list for a single run)."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

    return BasicSweeper.split_arguments(parsed, None)[0]


def _compose(config_name: str, overrides: list[str]):
    from hydra import compose

    return compose(config_name=config_name, overrides=overrides, return_hydra_config=True)


def _is_group(key: str) -> bool:
    """A config group choice (``model``, ``hydra/launcher``), as opposed to a value (``seed``, ``data.root``)."""
    key = key.lstrip("+~")
    return "/" in key or ("." not in key and (CONF_DIR / key).is_dir())


def _split(job: list[str]) -> tuple[tuple, list]:
    """``(what needs a composition of its own, the value overrides)`` of one job's overrides."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(job)
    structural = tuple(o.input_line for o in parsed if _is_group(o.key_or_group) or o.is_add() or o.is_delete()
                       or o.key_or_group.startswith("hydra"))
    return structural, [o for o in parsed if o.input_line not in structural]


def _apply_values(cfg, values) -> None:
    """Hydra's own step for value overrides (``key=value``) on a composed config: type and key checks."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    for o in values:
        try:
            OmegaConf.update(cfg, o.key_or_group, o.value(), merge=True)
        except OmegaConfBaseException as exc:
            raise ValueError(f"Error merging override {o.input_line}: {_hydra_text(exc)}") from None


def _composition_errors(config_name: str, jobs: list[list[str]], sweep: bool) -> tuple[list, object]:
    """The jobs that do not compose, with Hydra's reason, and the first composed config. A job whose group
    choices were composed already gets only its values applied to that config (as Hydra does after
    composing): a sweep over values costs one composition, not one per value."""
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from pipeline.config import register_configs

    register_configs()
    failures, first, composed = [], None, {}
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            for job in jobs:
                try:
                    structural, values = _split(job)
                    if structural in composed:  # composed once already: this job's values on that config
                        _apply_values(composed[structural], values)
                        continue
                    cfg = _compose(config_name, job)  # (a failed one is composed again for its next job)
                    composed[structural] = cfg
                except (HydraException, OmegaConfBaseException, ValueError) as exc:
                    failures.append((job, _hydra_text(exc)))
                    continue
                if first is None:
                    first = cfg
                    target = str(cfg.hydra.sweeper.get("_target_", "")) if sweep else ""
                    if sweep and not target.endswith("BasicSweeper"):
                        break  # another sweeper (Optuna) owns the search space: the first combination only
    finally:
        GlobalHydra.instance().clear()
    return failures, first


def check_overrides(config_name: str, argv: list[str]) -> None:
    """Raise :class:`CommandLineError` when ``argv`` (an entry script's arguments) cannot run."""
    from hydra._internal.utils import get_args_parser

    try:
        args, _ = get_args_parser().parse_known_args(argv)
    except SystemExit:
        return  # argparse's own error: Hydra prints it
    if (args.help or args.hydra_help or args.cfg or args.info or args.shell_completion or args.config_path
            or args.config_name or args.config_dir or getattr(args, "experimental_rerun", None)):
        return
    parsed = parse_arguments(list(args.overrides))
    check_no_internal_choice(parsed)
    sweep = bool(args.multirun)
    several = [o.input_line for o in parsed if o.is_sweep_override()]
    try:
        jobs = combinations(parsed) if sweep or several else [list(args.overrides)]
    except Exception:  # noqa: BLE001 -- a sweep type only another sweeper reads (interval(...)): its own check
        jobs = [[o.input_line for o in parsed if not o.is_sweep_override()]]
    if several and not sweep:  # a sweep without -m: only where the config itself asks for one (hparams_search=...)
        failures, first = _composition_errors(config_name, jobs[:1], False)
        sweep = first is not None and str(first.hydra.get("mode")) == "RunMode.MULTIRUN"
        if first is not None and not sweep:
            raise CommandLineError(f"{several[0]!r} gives several values, which only a sweep runs: add -m to run "
                                   f"one job per value, or quote a single value that holds commas: "
                                   f"{_quote_hint(several[0])}")
    failures, _ = _composition_errors(config_name, jobs, sweep)
    if not failures:
        return
    if not sweep:
        raise CommandLineError(failures[0][1])
    lines = [f"  {' '.join(job) or '(no arguments)'}: {text.replace(chr(10) + chr(10), chr(10)).replace(chr(10), chr(10) + '    ')}"
             for job, text in failures]
    raise CommandLineError(f"{len(failures)} of {len(jobs)} combinations of this sweep cannot run; nothing was run:\n"
                           + "\n".join(lines) + "\nFix or remove those values and start the sweep again.")


def check_command_line(config_name: str, argv: list[str] | None = None) -> None:
    """Before ``main()``: exit 2 with ``error: <message>`` when the command line cannot run (see the module doc)."""
    argv = sys.argv[1:] if argv is None else argv
    try:
        check_overrides(config_name, argv)
    except CommandLineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
