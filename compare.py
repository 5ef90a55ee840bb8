"""Compare trained runs: python compare.py <multirun dir>   (after python train.py -m model=a,b,c ...)

`python compare.py --help` explains the options. The command is deepfake.commands.compare.
"""

import sys

from deepfake.commands.compare import main

if __name__ == "__main__":
    sys.exit(main())
