"""Train a CNN: `python train.py [dataset=lines|mnist|fashion_mnist] [model=multihead|cnn_basic|cnn_deep] [key=value ...]`.

Configs live in conf/ (start with conf/train.yaml); `python train.py --help` lists the groups
and the composed config. All the work happens in pipeline/training/train.py.
"""
import hydra
from omegaconf import DictConfig

from pipeline.cli import run_job
from pipeline.command_line import check_command_line
from pipeline.config import register_configs

register_configs()


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig):
    from pipeline.training.train import run_training

    return run_job(run_training, cfg, objective=lambda s: s.get("objective"))  # optimized_metric, for Optuna


if __name__ == "__main__":
    check_command_line("train")  # bad arguments: exit 2 before Hydra writes anything (pipeline/command_line.py)
    main()
