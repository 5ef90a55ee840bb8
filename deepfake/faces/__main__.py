"""python -m deepfake.faces: the command of deepfake.commands.faces."""

import sys

from deepfake.commands.faces import main

if __name__ == "__main__":  # not when a worker process of the pool imports this module
    sys.exit(main())
