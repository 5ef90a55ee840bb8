"""train.py: train a detector, a Hydra app over configs/ (``python train.py --help`` lists the groups).

The work is :func:`deepfake.training.train.train`'s; this module composes the config and prints the test metrics.
"""

from __future__ import annotations

import sys

from deepfake.cli import CONFIG_DIR, hydra_command


def run(cfg) -> None:
    from deepfake.training.train import train

    metrics = train(cfg)
    if metrics:
        print("test metrics: " + ", ".join(f"{k}={v:.4f}" for k, v in metrics.items() if k.startswith("test/")))
        print(f"run directory: {cfg.run_dir}")


def schemas() -> None:
    from deepfake.training.config import store_config

    store_config()


def main(argv: list[str] | None = None) -> int:
    """train.py's exit status."""
    return hydra_command(run, config_dir=CONFIG_DIR, config_name="train", schemas=schemas, argv=argv)


if __name__ == "__main__":
    sys.exit(main())
