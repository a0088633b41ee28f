"""Fault soak: kill train.py and visualize.py with SIGKILL at random moments, then run what a user
runs next, and count what went wrong (issue 26).

    python benchmarks/fault_soak.py [--kills 50] [--seed 0] [--root DIR] [--fresh-process]

Each step starts one command on tiny configs under one ``paths.root_dir``:

- ``train.py`` (lines, multihead, data.per_class=6, 2 epochs): ``resume=latest`` whenever an earlier
  killed run left a checkpoint (the next command a user runs after a kill), else a new run; now and
  then with another ``data.generator_seed`` so that the dataset cache is built again (and killed while
  it is written);
- ``visualize.py job=activations num_images=3`` once a complete training run exists.

Most steps (``--kill-share``, 80 %) are killed with SIGKILL (the main process only, as ``kill -9 PID``)
at a moment drawn uniformly between 0.2 s and the longest full run of that command seen so far; the
others run to the end and must succeed. After every step it counts:

- **corrupt files**: a checkpoint that does not load (``weights_only``), a PNG that does not decode, an
  HDF5 file that does not open, a JSON record that does not parse, under their final names (partial
  files of a killed writer are expected right after a kill; the next command removes them: any left at
  the end are counted too);
- **orphan processes**: processes the killed one had started (figure workers) still running 3 s after;
- **runs wrongly picked**: ``resume=latest`` continuing another run than the one this script expects
  (the most recently killed run that had a whole checkpoint, and that no complete run has continued),
  ``visualize.py`` using another checkpoint than the best one of the newest complete training run, or a
  command run to the end failing.

The expectation is kept by the script from its own history (what it killed, when, and what it found
whole), not read from the pipeline's registry. The runs are forked from a process that imported torch,
Lightning and Hydra once (tests/cli_zygote.py), each a process of its own that is killed for real;
``--fresh-process`` starts a new interpreter for each instead. Prints one line per step and the
totals; ``--json FILE`` writes them.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TRAIN = ["dataset=lines", "model=multihead", "data.per_class=6", "data.batch_size=64", "data.progress=false",
         "trainer=cpu", "trainer.max_epochs=2", "trainer.enable_progress_bar=false",
         "trainer.enable_model_summary=false"]
VISUALIZE = ["dataset=lines", "data.per_class=6", "data.progress=false", "job=activations", "num_images=3"]


# --- running a command that may be killed -----------------------------------------------------------

class Runner:
    """Starts an entry script as a process of its own and lets it be killed or waited for."""

    def __init__(self, fresh: bool):
        self.zygote = None
        if not fresh:
            from tests.cli_zygote import _Zygote

            z = _Zygote()
            self.zygote = z if z.ready else None
        self.proc = None

    def start(self, script: str, args: list[str], cwd: Path, log: Path) -> int:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        if self.zygote is not None:
            req = {"script": str(ROOT / script), "args": args, "cwd": str(cwd), "env": env,
                   "out": str(log), "err": str(log.with_suffix(".err"))}
            self.zygote.proc.stdin.write(json.dumps(req) + "\n")
            self.zygote.proc.stdin.flush()
            return self.zygote._read(None)["pid"]
        self.proc = subprocess.Popen([sys.executable, str(ROOT / script), *args], cwd=cwd, env=env,
                                     stdout=open(log, "w"), stderr=open(log.with_suffix(".err"), "w"))
        return self.proc.pid

    def wait(self, timeout: float | None) -> int | None:
        """The exit status, or None if it is still running after ``timeout`` seconds."""
        if self.zygote is not None:
            done = self.zygote._read(None if timeout is None else time.monotonic() + timeout)
            return None if done is None else done["returncode"]
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None


def descendants(pid: int) -> set[int]:
    parent_of = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parent_of[int(stat.parent.name)] = int(fields[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {p for p, pp in parent_of.items() if pp in frontier and p not in found}
        found |= frontier
    return found


def running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


# --- checking the files ---------------------------------------------------------------------------

_checked: dict[tuple, str | None] = {}  # (path, size, mtime) -> the problem found, None: whole


def corrupt_files(root: Path) -> tuple[list[str], list[Path]]:
    """(files under their final names that are not whole, partial files present)."""
    bad, partials = [], []
    for p in sorted((root / "outputs").rglob("*")):
        try:
            if not p.is_file():
                continue
            st = p.stat()
        except FileNotFoundError:
            continue
        if ".partial" in p.name:
            partials.append(p)
            continue
        key = (p, st.st_size, st.st_mtime_ns)
        if key not in _checked:
            _checked[key] = _problem(p)
        if _checked[key] is not None:
            bad.append(f"{p}: {_checked[key]}")
    return bad, partials


def _problem(p: Path) -> str | None:
    import h5py
    from PIL import Image

    from pipeline.training.checkpoints import CheckpointLoadError, read_checkpoint

    try:
        if p.suffix == ".ckpt":
            read_checkpoint(p)
        elif p.suffix == ".png":
            with Image.open(p) as im:
                im.load()
        elif p.suffix == ".h5":
            with h5py.File(p, "r") as f:
                list(f)
        elif p.suffix == ".json":
            json.loads(p.read_text())
    except FileNotFoundError:
        return None
    except (CheckpointLoadError, OSError, ValueError, SyntaxError) as exc:
        return f"{type(exc).__name__}: {str(exc)[:120]}"
    return None


def loads(path: Path) -> bool:
    from pipeline.training.checkpoints import CheckpointLoadError, read_checkpoint

    try:
        read_checkpoint(path)
        return True
    except (CheckpointLoadError, FileNotFoundError):
        return False


def train_phase(run_dir: Path | None) -> str:
    if run_dir is None or not (run_dir / "run.json").is_file():
        return "start-up/data"
    try:
        status = json.loads((run_dir / "run.json").read_text()).get("status")
    except (OSError, ValueError):
        status = "?"
    if status == "complete":
        return "after complete"
    if (run_dir / "confusion").exists():
        return "test+figures"
    if any((run_dir / "checkpoints").glob("*.ckpt")):
        return "epoch 2+"
    return "epoch 1"


def vis_phase(run_dir: Path | None) -> str:
    if run_dir is None:
        return "start-up"
    if (run_dir / "summary.json").is_file():
        return "report/done"
    if (run_dir / "figures").exists() and any((run_dir / "figures").rglob("*.png")):
        return "figures"
    return "load+compute"


def new_dirs(parent: Path, before: set[Path]) -> list[Path]:
    if not parent.exists():
        return []
    return sorted({p.parent for p in parent.rglob(".hydra")} - before)


# --- the soak -----------------------------------------------------------------------------------------

def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kills", type=int, default=50)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--kill-share", type=float, default=0.8)
    ap.add_argument("--root", type=Path, default=None, help="paths.root_dir (default: a new temporary folder)")
    ap.add_argument("--fresh-process", action="store_true", help="a new interpreter per command")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    rng = random.Random(args.seed)
    root = args.root or Path(tempfile.mkdtemp(prefix="fault_soak_"))
    root.mkdir(parents=True, exist_ok=True)
    logs = root / "logs"
    logs.mkdir(exist_ok=True)
    runner = Runner(args.fresh_process)
    print(f"root {root}; runs {'forked from a preloaded zygote' if runner.zygote else 'in fresh interpreters'}")
    common = [f"paths.root_dir={root}"]
    train_root, vis_root = root / "outputs" / "train", root / "outputs" / "visualize"

    resumable: list[Path] = []       # killed train runs with a whole checkpoint, oldest first
    complete: list[Path] = []        # train runs that ended complete, oldest first
    longest = {"train": 60.0, "visualize": 60.0}  # seconds: the first full run's time, raised by later ones
    calibrated: set[str] = set()
    totals = Counter()
    phases = Counter()
    steps = []
    step = 0
    started = time.monotonic()
    while totals["kills"] < args.kills:
        step += 1
        action = "train" if not complete or rng.random() < 0.55 else "visualize"
        kill = rng.random() < args.kill_share and complete  # the first full train run calibrates
        if action == "train":
            cmd = [*TRAIN, *common]
            expect = resumable[-1] if resumable else None
            if expect is not None:
                cmd.append("resume=latest")
            elif rng.random() < 0.25:
                cmd.append(f"data.generator_seed={rng.randrange(1, 10**6)}")  # a cache to build (and kill)
            script, parent = "train.py", train_root
        else:
            cmd = [*VISUALIZE, *common]
            expect = complete[-1] if complete else None
            script, parent = "visualize.py", vis_root
        before = {p.parent for p in parent.rglob(".hydra")} if parent.exists() else set()
        log = logs / f"{step:03d}_{action}.out"
        t0 = time.monotonic()
        pid = runner.start(script, cmd, root, log)
        status = None
        delay = rng.uniform(0.2, longest[action]) if kill else None
        if kill:
            status = runner.wait(delay)
        if status is None and kill:
            mine = new_dirs(parent, before)
            run_dir = mine[-1] if mine else None
            phase = (train_phase if action == "train" else vis_phase)(run_dir)
            kids = descendants(pid)
            os.kill(pid, signal.SIGKILL)
            status = runner.wait(60)
            time.sleep(3.0)
            orphans = [k for k in kids if running(k)]
            for k in orphans:
                os.kill(k, signal.SIGKILL)
            totals["kills"] += 1
            totals["orphan processes"] += len(orphans)
            phases[f"{action}: {phase}"] += 1
            outcome = f"killed at {delay:5.1f} s ({phase})" + (f", {len(orphans)} ORPHAN(S)" if orphans else "")
        else:
            if status is None:
                status = runner.wait(None)
            elapsed = time.monotonic() - t0
            if status == 0:  # the first full run of a command sets the scale, later ones may raise it
                longest[action] = max(longest[action], elapsed) if action in calibrated else elapsed
                calibrated.add(action)
            run_dir = (new_dirs(parent, before) or [None])[-1]
            totals["full runs"] += 1
            outcome = f"ran to the end in {elapsed:5.1f} s, exit {status}"
            if status != 0:
                totals["runs wrongly picked"] += 1
                outcome += " FAILED: " + log.with_suffix(".err").read_text()[-400:].replace("\n", " | ")
        text = log.read_text(errors="replace") + log.with_suffix(".err").read_text(errors="replace")

        # which run/checkpoint did it pick, against the expectation
        picked, wrong = None, False
        if action == "train":
            m = re.search(r"resume=latest: continuing the run (\S+) from (\S+)", text)
            if m:
                picked = Path(m.group(1))
                wrong = expect is None or picked.resolve() != expect.resolve()
            elif expect is not None and status == 0:
                wrong = True  # ran to the end without resuming the run it should have
            try:
                rec = json.loads((run_dir / "run.json").read_text()) if run_dir is not None else {}
            except (OSError, ValueError):
                rec = {}
            if rec.get("status") == "complete":  # also a run killed after it recorded itself complete
                complete.append(run_dir)
                if rec.get("resumed_from"):
                    source = Path(rec["resumed_from"]).parent.parent
                    resumable[:] = [r for r in resumable if r.resolve() != source.resolve()]
            elif run_dir is not None and status != 0:
                ckpts = [p for p in (run_dir / "checkpoints").glob("*.ckpt") if p.stem in ("last", "interrupted")]
                if any(loads(p) for p in ckpts):
                    resumable.append(run_dir)
        else:
            m = re.search(r"checkpoint (\S+\.ckpt) \(run (\S+?);", text)
            if m:
                picked = Path(m.group(2))
                wrong = expect is None or picked.resolve() != expect.resolve() or \
                    Path(m.group(1)).name != "best.ckpt"
        totals["picks checked"] += picked is not None or (wrong and status == 0)
        totals["runs wrongly picked"] += wrong

        bad, partials = corrupt_files(root)
        totals["corrupt files"] = max(totals["corrupt files"], len(bad))
        line = (f"[{time.monotonic() - started:6.0f} s] step {step:3d} {action:9s} "
                f"{'resume=latest ' if 'resume=latest' in cmd else ''}{outcome}"
                f"{'; picked ' + picked.name if picked else ''}{' WRONG PICK (expected ' + str(expect) + ')' if wrong else ''}"
                f"; corrupt {len(bad)}, partial files {len(partials)}")
        print(line, flush=True)
        for b in bad:
            print("   CORRUPT", b, flush=True)
        steps.append({"step": step, "action": action, "outcome": outcome, "picked": str(picked) if picked else None,
                      "wrong_pick": wrong, "corrupt": bad, "partials": [str(p) for p in partials]})

    # the last word: a full train run (resume=latest if one is left) removes the partial files of the killed
    # runs; none may remain, and nothing may be corrupt
    final = [*TRAIN, *common] + (["resume=latest"] if resumable else [])
    runner.start("train.py", final, root, logs / "final_train.out")
    status = runner.wait(None)
    totals["full runs"] += 1
    totals["runs wrongly picked"] += status != 0
    bad, partials = corrupt_files(root)
    totals["corrupt files"] = max(totals["corrupt files"], len(bad))
    totals["partial files left at the end"] = len(partials)
    minutes = (time.monotonic() - started) / 60
    print(f"\nfinal train.py{' resume=latest' if resumable else ''}: exit {status}")
    print(f"{totals['kills']} kills in {minutes:.1f} min (seed {args.seed}); kills by phase:")
    for k, v in sorted(phases.items()):
        print(f"  {k:32s} {v}")
    for k in ("corrupt files", "orphan processes", "runs wrongly picked", "partial files left at the end",
              "picks checked", "full runs"):
        print(f"{k:32s} {totals[k]}")
    if args.json:
        args.json.write_text(json.dumps({"totals": dict(totals), "phases": dict(phases), "steps": steps,
                                         "seed": args.seed, "minutes": minutes}, indent=2))
    if runner.zygote is not None:
        runner.zygote.close()
    failed = totals["corrupt files"] or totals["orphan processes"] or totals["runs wrongly picked"] or \
        totals["partial files left at the end"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
