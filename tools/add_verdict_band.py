"""Give a model file exported before the verdict band its lower threshold, chosen as export.py chooses it.

    python tools/add_verdict_band.py models/default.onnx runs/default_model/split.csv          # fnr:0.05
    python tools/add_verdict_band.py model.onnx <run>/split.csv --threshold-low fnr:0.1

The file's own Predictor judges the validation rows of its run's split.csv (every face, the file's rule), the
lower threshold is read off those verdicts, and only the threshold_low keys are added: the graph, the threshold
and the calibration stay as they are. A file re-exported with export.py gets the band without this.
"""

import argparse
import sys

from deepfake.cli import run_command
from deepfake.export.calibration import add_verdict_band, describe_threshold_low
from deepfake.predictor import Predictor


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="the ONNX file to update in place")
    parser.add_argument("split_csv", help="its training run's split.csv (the val rows are used)")
    parser.add_argument("--threshold-low", default="fnr:0.05", help="fnr:<rate> or a number (default: fnr:0.05)")
    args = parser.parse_args()

    def work() -> None:
        low, info = add_verdict_band(args.model, args.split_csv, args.threshold_low)
        print(f"{args.model}: {describe_threshold_low(low, info, Predictor(args.model).threshold)}")
        print(f"chosen on {info['val_images']} validation images")

    return run_command(work)


if __name__ == "__main__":
    sys.exit(main())
