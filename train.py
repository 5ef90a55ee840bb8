"""Train a detector: python train.py model=cnn data.root=../shared/datasets/faces-mini trainer=cpu

Config groups live in configs/ (data, model, trainer, callbacks, logger, experiment);
`python train.py --help` lists them. The work is done by deepfake.training.train.
"""

import sys

import hydra
from omegaconf import DictConfig

from deepfake.errors import UserError


@hydra.main(version_base="1.3", config_path="configs", config_name="train")
def main(cfg: DictConfig) -> None:
    from deepfake.training import train

    try:
        metrics = train(cfg)
    except UserError as exc:
        sys.exit(f"error: {exc}")
    if metrics:
        print("test metrics: " + ", ".join(f"{k}={v:.4f}" for k, v in metrics.items() if k.startswith("test/")))
        print(f"run directory: {cfg.run_dir}")


if __name__ == "__main__":
    main()
