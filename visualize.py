"""Look inside a trained CNN: `python visualize.py job=activations|filters|gradcam|all|evaluate|probe [key=value ...]`.

Finds the newest checkpoint that train.py wrote for the dataset (or takes ckpt=...), and
writes visualization.h5, figures/ and index.html into its run directory. Configs: conf/visualize.yaml,
conf/job/ (one file per job), conf/methods/ (one per attribution method); `python visualize.py --help`.
All the work happens in pipeline/visualize_run.py and the jobs of pipeline/jobs/.
"""
import hydra
from omegaconf import DictConfig

from pipeline.cli import run_job
from pipeline.command_line import check_command_line
from pipeline.config import register_configs

register_configs()


@hydra.main(version_base="1.3", config_path="conf", config_name="visualize")
def main(cfg: DictConfig):
    from pipeline.visualize_run import run_visualize

    return run_job(run_visualize, cfg)


if __name__ == "__main__":
    check_command_line("visualize")  # bad arguments: exit 2 before Hydra writes anything (pipeline/command_line.py)
    main()
