"""Train a detector: python train.py model=cnn data.root=../shared/datasets/faces-mini trainer=cpu

Config groups live in configs/ (data, model, trainer, callbacks, logger, experiment);
`python train.py --help` lists them. The command is deepfake.commands.train.
"""

import sys

from deepfake.commands.train import main

if __name__ == "__main__":
    sys.exit(main())
