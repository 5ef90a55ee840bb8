"""Compare trained runs: python compare.py <multirun dir>   (after python train.py -m model=a,b,c ...)

`python compare.py --help` explains the options. The work is done by deepfake.compare.
"""

import sys

from deepfake.cli import compare

if __name__ == "__main__":
    sys.exit(compare())
