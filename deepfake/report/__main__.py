"""python -m deepfake.report: the command line of report.py."""

import sys

from deepfake.report import main

if __name__ == "__main__":  # not when a spawned worker process imports this module
    sys.exit(main())
