"""Faults as a user meets them (issue 26, items 6-10): real processes, real signals; each test asserts
the exit status, the message and that nothing is left behind."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT, run_cli


def _outputs_left(root: Path) -> list[Path]:
    outputs = root / "outputs"
    return sorted(p for p in outputs.rglob("*") if "cache" not in p.parts) if outputs.exists() else []


# --- 6: figure workers die with their parent -----------------------------------------------------

def _children(pid: int) -> list[int]:
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            kids.append(int(stat.parent.name))
    return kids


def _running(pid: int) -> bool:
    """Alive and not a zombie (a zombie has ended; only its exit status waits to be collected)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads process parents from /proc")
def test_kill_9_of_a_run_drawing_figures_leaves_no_worker_alive(tmp_path):
    """kill -9 of the parent while two figure workers are busy (render_all, which visualize.py's jobs and
    train.py's figure phase draw through): both workers are gone within a few seconds."""
    code = ("import time\n"
            "from pipeline.rendering import output, parallel\n"
            "output.configure_rendering({'workers': 2})\n"
            "parallel.render_all([(time.sleep, (300,), {}), (time.sleep, (300,), {})])\n")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    workers: list[int] = []
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(workers) < 2:
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            workers = [p for p in _children(proc.pid) if _running(p)]
            time.sleep(0.1)
        assert len(workers) == 2, "the pool did not start its two workers"
        time.sleep(0.5)  # the workers are inside their (blocking) figure call
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(_running(p) for p in workers):
        time.sleep(0.1)
    alive = [p for p in workers if _running(p)]
    for p in alive:  # do not leave them to the next test
        os.kill(p, signal.SIGKILL)
    assert alive == [], f"figure workers {alive} outlived their killed parent"


def test_a_worker_whose_parent_is_gone_ends_itself(monkeypatch):
    """The watchdog alone (no parent-death signal, e.g. not Linux): a worker started for a parent pid
    that is not its parent exits at once."""
    from pipeline.rendering import parallel

    pid = os.fork()
    if pid == 0:  # the child: "its parent" is a pid that is not its parent
        try:
            parallel._die_with_parent(os.getppid() + 10**6)
            time.sleep(5)
        finally:
            os._exit(0)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 1


# --- 7: a sweep with a bad combination runs nothing ----------------------------------------------

@pytest.mark.parametrize("script,args,bad", [
    ("train.py", ["-m", "model=cnn_basic,nonexistent,cnn_deep,resnet", "dataset=mnist"],
     ["model=nonexistent dataset=mnist", "model=resnet dataset=mnist"]),
    ("visualize.py", ["-m", "job=activations,dream", "dataset=lines,imagenet"],
     ["job=dream dataset=lines", "job=activations dataset=imagenet", "job=dream dataset=imagenet"]),
    ("eval.py", ["-m", "dataset=mnist,nope", "ckpt=x.ckpt", "data.batch_size=8,abc"],
     ["dataset=nope ckpt=x.ckpt data.batch_size=8", "dataset=mnist ckpt=x.ckpt data.batch_size=abc"]),
])
def test_a_sweep_with_bad_values_names_every_bad_combination_and_runs_nothing(tmp_path, script, args, bad):
    proc = run_cli(script, [*args, f"paths.root_dir={tmp_path}"], cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    n_jobs = {"train.py": 4, "visualize.py": 4, "eval.py": 4}[script]
    n_bad = len(bad) if script != "eval.py" else 3  # eval: (nope, 8), (mnist, abc), (nope, abc)
    assert f"error: {n_bad} of {n_jobs} combinations of this sweep cannot run; nothing was run" in proc.stderr
    for combo in bad:
        assert f"  {combo} paths.root_dir={tmp_path}: " in proc.stderr, proc.stderr
    assert "base_" not in proc.stderr
    assert _outputs_left(tmp_path) == []  # no sweep folder, no multirun.yaml


# --- 9: Hydra's own errors: exit 2, the argument named, no internal options ----------------------

def test_an_unquoted_path_with_brackets_names_the_argument_and_how_to_quote_it(tmp_path):
    proc = run_cli("train.py", ["dataset=lines_folder", "data.root=/data/run[1]/classes", f"paths.root_dir={tmp_path}"],
                   cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "cannot read the argument 'data.root=/data/run[1]/classes'" in proc.stderr
    assert """'data.root="/data/run[1]/classes"'""" in proc.stderr
    assert "Traceback" not in proc.stderr and _outputs_left(tmp_path) == []


@pytest.mark.parametrize("script", ["train.py", "eval.py", "visualize.py"])
def test_an_internal_schema_is_refused_and_never_offered(tmp_path, script):
    proc = run_cli(script, ["dataset=base_lines", f"paths.root_dir={tmp_path}"], cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert ("error: dataset=base_lines is an internal schema that the dataset configs extend, not an option to "
            "choose. Use one of: fashion_mnist, image_folder, lines, lines_folder, mnist") in proc.stderr
    assert "Traceback" not in proc.stderr and _outputs_left(tmp_path) == []
    listing = run_cli(script, ["dataset=imagenet", f"paths.root_dir={tmp_path}"], cwd=tmp_path)
    assert listing.returncode == 2 and "Available options in 'dataset':" in listing.stderr
    assert "\tlines_folder" in listing.stderr and "base_" not in listing.stderr
    assert "Config search path" not in listing.stderr and _outputs_left(tmp_path) == []


def test_several_values_without_m_say_to_add_it(tmp_path):
    proc = run_cli("train.py", ["model=cnn_basic,cnn_deep", f"paths.root_dir={tmp_path}"], cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "'model=cnn_basic,cnn_deep' gives several values, which only a sweep runs: add -m" in proc.stderr
    assert _outputs_left(tmp_path) == []


# --- 8: errors keep their cause -------------------------------------------------------------------

def test_a_network_that_fails_to_build_shows_the_root_cause(tmp_path):
    from tests.conftest import QUIET_TRAINER, TINY

    proc = run_cli("train.py", [*TINY["lines"], *QUIET_TRAINER, "model.net.channels=[]", f"paths.root_dir={tmp_path}"],
                   cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "building it failed (" in proc.stderr and "IndexError: list index out of range)" in proc.stderr
    assert "channels=[]" in proc.stderr  # the arguments it was given
    assert "Traceback" not in proc.stderr
    assert [p for p in _outputs_left(tmp_path) if p.is_file()] == []


@pytest.fixture
def lines_ckpt(tiny_trained):
    """The session's tiny lines checkpoint (multihead, written by train.py's own code; read only), and its content."""
    import torch

    _, runs = tiny_trained
    ckpt = Path(runs[("lines", "multihead")]["best_checkpoint"])
    return ckpt, torch.load(ckpt, map_location="cpu", weights_only=True)


def _eval(tmp_path, ckpt) -> subprocess.CompletedProcess:
    from tests.conftest import TINY

    return run_cli("eval.py", [f"ckpt={ckpt}", *TINY["lines"], f"paths.root_dir={tmp_path}"], cwd=tmp_path)


def test_a_checkpoint_with_renamed_keys_names_them_and_leaves_no_eval_folder(tmp_path, lines_ckpt):
    import torch

    _, content = lines_ckpt
    state = content["state_dict"]
    old = next(k for k in state if k.endswith("conv1.weight"))
    changed = {**content, "state_dict": {("net.renamed_conv.weight" if k == old else k): v for k, v in state.items()}}
    torch.save(changed, tmp_path / "renamed.ckpt")
    proc = _eval(tmp_path, tmp_path / "renamed.ckpt")
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert f"Missing key(s) {old}" in proc.stderr and "Unexpected key(s) net.renamed_conv.weight" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert _outputs_left(tmp_path) == []  # 10: no empty outputs/eval/<dataset>/ left


def test_a_plain_state_dict_given_to_eval_says_what_the_file_is_and_what_is_expected(tmp_path, lines_ckpt):
    import torch

    _, content = lines_ckpt
    torch.save(content["state_dict"], tmp_path / "weights.pt")
    proc = _eval(tmp_path, tmp_path / "weights.pt")
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert f"ckpt={tmp_path / 'weights.pt'} is a plain state_dict ({len(content['state_dict'])} tensors" in proc.stderr
    assert "a Lightning checkpoint written by train.py" in proc.stderr
    assert "pytorch-lightning_version'" not in proc.stderr and "KeyError" not in proc.stderr
    assert _outputs_left(tmp_path) == []


# --- 10: small ones -------------------------------------------------------------------------------

@pytest.mark.parametrize("script", ["eval.py", "visualize.py"])
def test_ckpt_naming_a_directory_says_so_and_names_the_checkpoints_in_it(tmp_path, lines_ckpt, script):
    from tests.conftest import TINY

    ckpt, _ = lines_ckpt
    run_dir = ckpt.parent.parent
    proc = run_cli(script, [f"ckpt={run_dir}", *TINY["lines"], f"paths.root_dir={tmp_path}"], cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert f"ckpt={run_dir} is a directory, not a checkpoint file" in proc.stderr
    assert f"e.g. ckpt={run_dir / 'checkpoints' / 'best.ckpt'}" in proc.stderr
    assert "no such file" not in proc.stderr and _outputs_left(tmp_path) == []


def test_image_naming_a_directory_says_so(tmp_path, lines_ckpt):
    from tests.conftest import TINY

    ckpt, _ = lines_ckpt
    (tmp_path / "pictures").mkdir()
    before = sorted(ckpt.parent.parent.rglob("*"))
    proc = run_cli("visualize.py", [f"ckpt={ckpt}", "job=activations", f"image={tmp_path / 'pictures'}",
                                    *TINY["lines"], f"paths.root_dir={tmp_path}"], cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert f"image={tmp_path / 'pictures'} is a directory, not an image file" in proc.stderr
    assert "no such file" not in proc.stderr
    assert sorted(ckpt.parent.parent.rglob("*")) == before and _outputs_left(tmp_path) == []


@pytest.fixture
def read_only_dir(tmp_path):
    """A read-only file system (a small tmpfs mounted ro), or skip where mounting is not allowed."""
    mnt = tmp_path / "ro"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(mnt)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    yield mnt
    subprocess.run(["umount", str(mnt)], capture_output=True)


def test_a_read_only_cache_folder_is_refused_before_the_data_is_generated(tmp_path, read_only_dir):
    from tests.conftest import QUIET_TRAINER, TINY

    proc = run_cli("train.py", [*TINY["lines"], "data.per_class=50", *QUIET_TRAINER, f"data.cache_dir={read_only_dir}",
                                f"paths.root_dir={tmp_path}"], cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert f"cannot write {read_only_dir}/" in proc.stderr
    assert f"the cache folder {read_only_dir} cannot be written (read-only), checked before building" in proc.stderr
    assert "write elsewhere: data.cache_dir=DIR for this dataset's cache" in proc.stderr
    assert "building it" not in proc.stdout + proc.stderr  # refused before the generation started
    assert "Traceback" not in proc.stderr
    assert [p for p in _outputs_left(tmp_path) if p.is_file()] == []
