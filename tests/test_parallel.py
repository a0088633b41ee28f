"""Each job of a parallel sweep gets its share of the cores (torch threads)."""
from __future__ import annotations

import pytest

from pipeline.errors import ConfigError
from pipeline.parallel import thread_share

JOBLIB = "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"
SUBMITIT = "hydra_plugins.hydra_submitit_launcher.submitit_launcher.LocalLauncher"
BASIC = "hydra._internal.core_plugins.basic_launcher.BasicLauncher"


@pytest.mark.parametrize("requested,launcher,env,cores,expected", [
    (None, {"_target_": JOBLIB, "n_jobs": 2}, {}, 2, 1),        # 2 jobs x 1 thread on 2 cores
    (None, {"_target_": JOBLIB, "n_jobs": 2}, {}, 16, 8),
    (None, {"_target_": JOBLIB, "n_jobs": -1}, {}, 8, 1),       # joblib's -1: one job per core
    (None, {"_target_": JOBLIB, "n_jobs": -2}, {}, 8, 1),       # all but one core: 7 jobs
    (None, {"_target_": JOBLIB, "n_jobs": 1}, {}, 4, 4),
    (None, {"_target_": SUBMITIT, "cpus_per_task": 3}, {}, 8, 3),
    (None, {"_target_": SUBMITIT}, {"SLURM_CPUS_PER_TASK": "6"}, 64, 6),
    (None, {"_target_": BASIC}, {}, 8, None),                   # one run at a time: torch's default
    (None, None, {}, 8, None),
    (5, {"_target_": JOBLIB, "n_jobs": 2}, {}, 2, 5),           # torch_threads=5 wins
])
def test_thread_share(requested, launcher, env, cores, expected):
    assert thread_share(requested, launcher, env=env, cores=cores) == expected


@pytest.mark.parametrize("bad", [0, -1, True, "2"])
def test_a_bad_thread_count_is_refused(bad):
    with pytest.raises(ConfigError, match="torch_threads="):
        thread_share(bad, None, env={}, cores=2)


@pytest.mark.parametrize("env,rank", [({}, 0), ({"RANK": "3"}, 3), ({"SLURM_PROCID": "0"}, 0), ({"SLURM_PROCID": "5"}, 5),
                                      ({"LOCAL_RANK": "1"}, 1), ({"LOCAL_RANK": "0", "NODE_RANK": "1"}, 1)])
def test_distributed_rank(env, rank):
    """Only rank 0 of a DDP run checks and records its run directory (the others share it)."""
    from pipeline.processes import distributed_rank

    assert distributed_rank(env) == rank


def test_the_slurm_launcher_config_takes_nodes_and_tasks_from_the_trainer(tmp_path):
    """hydra/launcher=slurm: one SLURM task per DDP device, trainer.num_nodes nodes (Lightning then reads
    the SLURM environment); visualize.py, which has no trainer, gets one task on one node."""
    from tests.conftest import compose_cfg

    cfg = compose_cfg(tmp_path, ["hydra/launcher=slurm", "trainer=ddp", "trainer.devices=4", "trainer.num_nodes=2",
                                 "hydra.launcher.partition=gpu"])
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher") and launcher.partition == "gpu"
    assert (launcher.nodes, launcher.tasks_per_node, launcher.cpus_per_task) == (2, 4, 4)
    assert launcher.array_parallelism > 0 and launcher.timeout_min > 0
    vis = compose_cfg(tmp_path, ["hydra/launcher=slurm"], config_name="visualize").hydra.launcher
    assert (vis.nodes, vis.tasks_per_node) == (1, 1)
