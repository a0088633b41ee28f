"""Faults of train.py as a user meets them (issue 26, items 1-5): real processes, real signals (SIGINT to
the process group, as a terminal's Ctrl-C; SIGKILL), a real full file system (a small tmpfs mounted here
when the test may mount one, else a file-size limit, RLIMIT_FSIZE, in the child: the test's output says
which ran). Each test asserts the exit status, the message, and that every file left is whole
(checkpoints load, PNGs decode, HDF5 files open) or gone."""
from __future__ import annotations

import contextlib
import json
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import QUIET_TRAINER, ROOT, TINY, run_cli

LINES = [*TINY["lines"], "model=multihead"]


# --- helpers ------------------------------------------------------------------------------------

def whole_files(root: Path) -> list[str]:
    """Every problem with the files under ``root``: a partial file left, a checkpoint that does not load
    (weights_only), a PNG that does not decode, an HDF5 file that does not open, a run.json that is not JSON."""
    import h5py
    from PIL import Image

    from pipeline.training.checkpoints import CheckpointLoadError, read_checkpoint

    bad = []
    for p in sorted(Path(root).rglob("*")):
        if not p.is_file():
            continue
        if ".partial" in p.name:
            bad.append(f"partial file left: {p}")
        elif p.suffix == ".ckpt":
            try:
                read_checkpoint(p)
            except CheckpointLoadError as exc:
                bad.append(f"checkpoint does not load: {p} ({exc})")
        elif p.suffix == ".png":
            try:
                with Image.open(p) as im:
                    im.load()
            except Exception as exc:  # noqa: BLE001 -- any decoding failure is the finding
                bad.append(f"PNG does not decode: {p} ({exc})")
        elif p.suffix == ".h5":
            try:
                with h5py.File(p, "r") as f:
                    list(f)
            except Exception as exc:  # noqa: BLE001
                bad.append(f"HDF5 does not open: {p} ({exc})")
        elif p.name in ("run.json", "test_metrics.json", "error.json"):
            try:
                json.loads(p.read_text())
            except ValueError as exc:
                bad.append(f"not JSON: {p} ({exc})")
    return bad


def run_records(root: Path) -> list[dict]:
    out = Path(root) / "outputs" / "train"
    return [json.loads(p.read_text()) | {"_dir": str(p.parent)} for p in sorted(out.rglob("run.json"))] \
        if out.exists() else []


def start(args: list[str], root: Path, **popen) -> subprocess.Popen:
    """train.py in a process group of its own (a terminal's Ctrl-C goes to the whole group)."""
    log = open(root / f"train-{time.monotonic_ns()}.out", "w+")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, str(ROOT / "train.py"), *args], cwd=root, stdout=log,
                            stderr=subprocess.STDOUT, env=env, start_new_session=True, **popen)
    proc.log = log
    return proc


def output_of(proc: subprocess.Popen) -> str:
    proc.log.seek(0)
    return proc.log.read()


def wait_for(predicate, proc: subprocess.Popen, timeout: float, poll: float = 0.02) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc.poll() is not None:
            pytest.fail(f"train.py ended (exit {proc.returncode}) before the moment to interrupt it:\n"
                        f"{output_of(proc)[-3000:]}")
        if time.monotonic() > deadline:
            os.killpg(proc.pid, signal.SIGKILL)
            pytest.fail(f"the moment to interrupt never came in {timeout} s:\n{output_of(proc)[-3000:]}")
        time.sleep(poll)


def group_alive(pgid: int) -> list[int]:
    """Processes of the group still running (zombies excepted)."""
    alive = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            alive.append(int(stat.parent.name))
    return alive


@contextlib.contextmanager
def full_disk(folder: Path, size_kb: int):
    """``folder`` on a tmpfs of ``size_kb`` KiB when this process may mount one ("tmpfs"), else nothing
    mounted and the child is given a file-size limit of ``size_kb`` KiB ("RLIMIT_FSIZE"): yields
    (which, Popen keyword arguments for the child)."""
    folder.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs", str(folder)],
                             capture_output=True).returncode == 0 if os.geteuid() == 0 else False
    if mounted:
        try:
            yield "tmpfs", {}
        finally:
            subprocess.run(["umount", "-l", str(folder)], capture_output=True)
        return

    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG, as a full disk
        resource.setrlimit(resource.RLIMIT_FSIZE, (size_kb * 1024, size_kb * 1024))

    yield "RLIMIT_FSIZE", {"preexec_fn": limit}


# --- 1: a full disk while the dataset cache is written --------------------------------------------

def test_a_full_disk_under_the_dataset_cache_is_a_clean_exit_2(tmp_path):
    cache = tmp_path / "cache"
    # the lines cache of data.per_class=6 is ~360 KiB: it cannot fit in 200 KiB
    with full_disk(cache, 200) as (which, popen):
        print(f"full disk made with {which}")
        proc = start([*LINES, *QUIET_TRAINER, f"paths.root_dir={tmp_path}", f"paths.cache_dir={cache}"],
                     tmp_path, **popen)
        proc.wait(timeout=300)
        out = output_of(proc)
        assert proc.returncode == 2, out[-3000:]
        assert "Traceback" not in out and "RuntimeError" not in out, out[-3000:]
        assert f"error: cannot write {cache / 'lines'}" in out, out[-3000:]
        assert ("No space left on device" if which == "tmpfs" else "File too large") in out
        assert "paths.cache_dir=DIR" in out  # the fix
        assert [p for p in cache.rglob("*") if p.is_file()] == []  # no partial cache file left
    assert run_records(tmp_path) == []  # no run directory left behind
    assert whole_files(tmp_path) == []


# --- 2: a full disk while checkpoints are written -------------------------------------------------

def test_a_full_disk_while_checkpoints_are_written_keeps_the_previous_ones_whole(tmp_path):
    root = tmp_path / "root"
    # a multihead checkpoint is ~680 KiB: epoch 1's best.ckpt and last.ckpt fit in 1,700 KiB, a third
    # checkpoint (epoch 2's, written beside the previous one before it replaces it) does not
    with full_disk(root, 1700) as (which, popen):
        print(f"full disk made with {which}")
        proc = start([*LINES, *QUIET_TRAINER, "trainer.max_epochs=4", "trainer.limit_train_batches=2",
                      f"paths.root_dir={root}", f"paths.cache_dir={tmp_path / 'cache'}"], tmp_path, **popen)
        proc.wait(timeout=300)
        out = output_of(proc)
        assert proc.returncode == 2, out[-3000:]
        assert "Traceback" not in out, out[-3000:]
        assert "error: cannot write the checkpoint" in out and "checkpoints: " in out, out[-3000:]
        assert ("No space left on device" if which == "tmpfs" else "File too large") in out
        assert "paths.root_dir=DIR" in out
        [record] = run_records(root)
        assert record["status"] == "failed", record  # never "running" after the process ended
        assert "cannot write the checkpoint" in record["error"] and record["_dir"] in record["error"]
        ckpts = sorted(p.name for p in (Path(record["_dir"]) / "checkpoints").glob("*.ckpt"))
        if which == "tmpfs":  # epoch 1's checkpoints stay as they were
            assert ckpts == ["best.ckpt", "last.ckpt"], ckpts
            assert "continue it with:" in out and "resume=" in out
        else:  # every checkpoint is over the limit: none is written, none is half-written
            assert ckpts == [], ckpts
        assert whole_files(root) == []


# --- 2 and 3: kill -9 in epoch 2, then resume=latest with more epochs ------------------------------

def test_kill_9_then_resume_latest_with_more_epochs(tmp_path):
    common = [*LINES, *QUIET_TRAINER, f"paths.root_dir={tmp_path}"]
    proc = start([*common, "trainer.max_epochs=4"], tmp_path)
    last = []

    def epoch_1_checkpointed():
        last[:] = list((tmp_path / "outputs" / "train").rglob("last.ckpt"))
        return bool(last)

    wait_for(epoch_1_checkpointed, proc, timeout=240)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert whole_files(tmp_path) == []
    [killed] = run_records(tmp_path)
    assert killed["status"] == "running"  # a killed process writes nothing: the next run sees it stale
    # an older version's leftover: a 0-byte interrupted.ckpt, newer than last.ckpt
    empty = last[0].with_name("interrupted.ckpt")
    empty.write_bytes(b"")

    res = run_cli("train.py", [*common, "trainer.max_epochs=6", "resume=latest"], cwd=tmp_path)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-3000:]
    assert "Tried to step" not in out and "Traceback" not in out
    assert f"skipping {empty}" in out  # never picked: it does not load
    assert "epochs: 6   steps: 18" in out  # 6 epochs of 3 batches, the one-cycle schedule re-planned for 18
    done = [r for r in run_records(tmp_path) if r["status"] == "complete"]
    assert len(done) == 1 and done[0]["resumed_from"] == str(last[0])
    empty.unlink()
    assert whole_files(tmp_path) == []


def test_the_one_cycle_schedule_is_replanned_for_the_new_length(tiny_cfg):
    """Unit oracle for item 3: after a resume with more steps the schedule's total is the new one and the
    learning rate at the step reached is the new plan's (torch's own OneCycleLR stepped there)."""
    import torch

    from pipeline.training.lit_module import LitClassifier  # noqa: F401 -- the class under test
    from pipeline.training.train import build

    cfg = tiny_cfg("lines", "multihead", ["trainer.max_epochs=2"])
    _, module, trainer = build(cfg)
    module.trainer = trainer
    opt = torch.optim.AdamW(module.parameters(), lr=1e-3)
    old = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.01, total_steps=10)
    for _ in range(6):
        opt.step()
        old.step()
    module._run_length = ("total_steps", 30)
    module._sched_cfg = {"_target_": "torch.optim.lr_scheduler.OneCycleLR", "max_lr": 0.01, "total_steps": 30}

    class Config:
        scheduler = old

    cfgs = [Config()]
    trainer.strategy.lr_scheduler_configs = cfgs
    module._replan_schedule()
    new = cfgs[0].scheduler
    assert new.total_steps == 30 and new.last_epoch == 6
    ref_opt = torch.optim.AdamW([torch.zeros(1, requires_grad=True)], lr=1e-3)
    ref = torch.optim.lr_scheduler.OneCycleLR(ref_opt, max_lr=0.01, total_steps=30)
    for _ in range(6):
        ref_opt.step()
        ref.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(ref_opt.param_groups[0]["lr"])
    for _ in range(24):  # the rest of the new length steps without "Tried to step N times"
        opt.step()
        new.step()


# --- 4: resume= with another dataset's or model's checkpoint --------------------------------------

def test_resume_with_another_dataset_or_model_is_refused_before_any_work(tiny_trained, tmp_path):
    trained_root, runs = tiny_trained
    ckpt = runs[("mnist", "cnn_basic")]["last_checkpoint"]
    assert ckpt
    common = [*QUIET_TRAINER, f"paths.root_dir={tmp_path}", f"resume={ckpt}"]
    cases = {
        # same model, same class count (10), other class names: only the names tell
        "other dataset": ([*TINY["fashion_mnist"], "model=cnn_basic"],
                          "was trained on dataset=mnist (10 classes", "this run is dataset=fashion_mnist (10 classes"),
        "other model": ([*TINY["mnist"], "model=cnn_deep"], "holds a cnn_basic model", "not model=cnn_deep"),
        "other network": ([*TINY["mnist"], "model=cnn_basic", "model.net.hidden=64"],
                          "holds another cnn_basic network", "weight(s) differ"),
    }
    for name, (args, *wanted) in cases.items():
        res = run_cli("train.py", [*args, *common], cwd=tmp_path)
        err = res.stderr
        assert res.returncode == 2, (name, (res.stdout + err)[-3000:])
        assert "Traceback" not in err and "error: resume=" in err, (name, err[-3000:])
        for w in wanted:
            assert w in err, (name, w, err[-2000:])
        assert run_records(tmp_path) == [], name  # no "failed" run directory left
        left = [p for p in (tmp_path / "outputs" / "train").rglob("*") if p.is_file()] \
            if (tmp_path / "outputs" / "train").exists() else []
        assert left == [], (name, left)


# --- 5: Ctrl-C during training and during the test/figure phase ------------------------------------

def _ctrl_c_case(tmp_path: Path, args: list[str], moment) -> tuple[subprocess.Popen, str]:
    proc = start([*LINES, *QUIET_TRAINER, f"paths.root_dir={tmp_path}", *args], tmp_path)
    wait_for(moment, proc, timeout=240, poll=0.005)
    os.killpg(proc.pid, signal.SIGINT)  # the terminal sends Ctrl-C to the whole foreground group
    try:
        proc.wait(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        pytest.fail(f"Ctrl-C did not stop train.py:\n{output_of(proc)[-3000:]}")
    time.sleep(0.5)
    assert group_alive(proc.pid) == []  # no figure worker outlives it
    return proc, output_of(proc)


def test_ctrl_c_during_training_exits_130_recorded_interrupted(tmp_path):
    proc, out = _ctrl_c_case(tmp_path, ["trainer.max_epochs=50"],
                             lambda: any((tmp_path / "outputs" / "train").rglob("last.ckpt")))
    assert proc.returncode == 130, out[-3000:]
    assert "error: interrupted (Ctrl-C)" in out and "Traceback" not in out
    [record] = run_records(tmp_path)
    assert record["status"] == "interrupted" and record["reason"] == "Ctrl-C"
    assert (Path(record["_dir"]) / "checkpoints" / "interrupted.ckpt").is_file()
    assert whole_files(tmp_path) == []


def test_ctrl_c_while_the_figures_are_drawn_exits_130_recorded_interrupted(tmp_path):
    def figures_started():
        return any((tmp_path / "outputs" / "train").rglob("confusion")) if (tmp_path / "outputs").exists() else False

    proc, out = _ctrl_c_case(tmp_path, ["trainer.max_epochs=1", "render.workers=2"], figures_started)
    assert proc.returncode == 130, out[-3000:]
    assert "error: interrupted (Ctrl-C)" in out
    [record] = run_records(tmp_path)
    assert record["status"] == "interrupted" and record["reason"] == "Ctrl-C", record
    assert whole_files(tmp_path) == []
