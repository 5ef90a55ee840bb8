"""Export a checkpoint to ONNX: python export.py ckpt=<run>/checkpoints/last.ckpt out=model.onnx

`python export.py --help` lists the options (deepfake.export.ExportOptions). The command is deepfake.commands.export.
"""

import sys

from deepfake.commands.export import main

if __name__ == "__main__":
    sys.exit(main())
