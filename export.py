"""Export a checkpoint to ONNX: python export.py ckpt=<run>/checkpoints/last.ckpt out=model.onnx

`python export.py --help` lists the options (deepfake.export.ExportOptions). The work is done by deepfake.export.
"""

import sys
from pathlib import Path

from deepfake.cli import hydra_command


def main(cfg) -> None:
    from deepfake.export import export

    export(cfg)


def schemas() -> None:
    from deepfake.export import store_config

    store_config()


if __name__ == "__main__":
    sys.exit(hydra_command(main, config_dir=Path(__file__).parent / "configs", config_name="export", schemas=schemas))
