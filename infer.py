"""Verdicts for images: python infer.py [--onnx model.onnx] img.jpg [more files or folders]

`python infer.py --help` explains the options. The command is deepfake.commands.infer.
"""

import sys

from deepfake.commands.infer import main

if __name__ == "__main__":
    sys.exit(main())
