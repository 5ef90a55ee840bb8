"""Evaluate a detector on a labelled dataset: python evaluate.py --model m.onnx --data <root> [--split test] --out DIR

`python evaluate.py --help` explains the options. The command is deepfake.commands.evaluate.
"""

import sys

from deepfake.commands.evaluate import main

if __name__ == "__main__":
    sys.exit(main())
