"""Export a checkpoint to ONNX: python export.py ckpt=<run>/checkpoints/last.ckpt out=model.onnx

`python export.py --help` lists the options (configs/export.yaml). The work is done by deepfake.export.
"""

import sys

import hydra
from omegaconf import DictConfig

from deepfake.errors import UserError


@hydra.main(version_base="1.3", config_path="configs", config_name="export")
def main(cfg: DictConfig) -> None:
    from deepfake.export import export

    try:
        export(cfg)
    except UserError as exc:
        sys.exit(f"error: {exc}")


if __name__ == "__main__":
    main()
