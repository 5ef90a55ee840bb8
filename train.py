"""Train a detector: python train.py model=cnn data.root=../shared/datasets/faces-mini trainer=cpu

Config groups live in configs/ (data, model, trainer, callbacks, logger, experiment);
`python train.py --help` lists them. The work is done by deepfake.training.train.
"""

import sys
from pathlib import Path

from deepfake.cli import hydra_command


def main(cfg) -> None:
    from deepfake.training import train

    metrics = train(cfg)
    if metrics:
        print("test metrics: " + ", ".join(f"{k}={v:.4f}" for k, v in metrics.items() if k.startswith("test/")))
        print(f"run directory: {cfg.run_dir}")


def schemas() -> None:
    from deepfake.training import store_config

    store_config()


if __name__ == "__main__":
    sys.exit(hydra_command(main, config_dir=Path(__file__).parent / "configs", config_name="train", schemas=schemas))
