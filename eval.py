"""Test a trained checkpoint on a dataset: `python eval.py ckpt=PATH [dataset=lines_folder data.root=DIR] [key=value ...]`.

Runs the dataset's test split (every image with data.test_fraction=1.0) through the model and
writes test_metrics.json (the format of train.py's) and confusion/ into outputs/eval/<dataset>/<time>/.
Configs: conf/eval.yaml; `python eval.py --help`. All the work happens in pipeline/training/evaluate.py.
"""
import hydra
from omegaconf import DictConfig

from pipeline.cli import run_job
from pipeline.command_line import check_command_line
from pipeline.config import register_configs

register_configs()


@hydra.main(version_base="1.3", config_path="conf", config_name="eval")
def main(cfg: DictConfig):
    from pipeline.training.evaluate import run_evaluation

    return run_job(run_evaluation, cfg, objective=lambda s: (s.get("test", {}).get(s.get("main_head"), {}) or {}).get("accuracy"))


if __name__ == "__main__":
    check_command_line("eval")  # bad arguments: exit 2 before Hydra writes anything (pipeline/command_line.py)
    main()
