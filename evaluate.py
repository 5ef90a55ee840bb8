"""Evaluate a detector on a labelled dataset: python evaluate.py --model m.onnx --data <root> [--split test] --out DIR

`python evaluate.py --help` explains the options. The work is done by deepfake.evaluate (and deepfake.robustness).
"""

import sys

from deepfake.cli import evaluate

if __name__ == "__main__":
    sys.exit(evaluate())
