"""python -m deepfake.web: the development server, ``deepfake-serve --dev`` (deepfake.commands.serve)."""

import os
import sys

from deepfake.commands.serve import main

if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main(dev=True, prog="python -m deepfake.web"))
