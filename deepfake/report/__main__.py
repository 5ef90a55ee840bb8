"""python -m deepfake.report: the command of deepfake.commands.report (report.py)."""

import sys

from deepfake.commands.report import main

if __name__ == "__main__":  # not when a spawned worker process imports this module
    sys.exit(main())
