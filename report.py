"""Report on labelled datasets before training: python report.py ROOT [ROOT ...] [--split-csv split.csv] --out DIR

Counts, sizes, formats and JPEG quality per class, unreadable files, exact and near duplicates (within a class,
across classes, splits and datasets), sample grids and findings: report.html (opens offline) and summary.json.
`python report.py --help` explains the options. The command is deepfake.commands.report.
"""

import sys

from deepfake.commands.report import main

if __name__ == "__main__":
    sys.exit(main())
