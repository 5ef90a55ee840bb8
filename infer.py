"""Verdicts for images: python infer.py [--onnx model.onnx] img.jpg [more files or folders]

`python infer.py --help` explains the options. The work is done by deepfake.infer (torch-free).
"""

import sys

from deepfake.infer import main

if __name__ == "__main__":
    sys.exit(main())
