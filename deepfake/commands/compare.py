"""compare.py and deepfake-compare: trained runs side by side (:mod:`deepfake.compare` does the work)."""

from __future__ import annotations

import argparse
from pathlib import Path

from deepfake.cli import positive_int, run_command


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=(
            "Compare trained runs: test metrics, parameter count, ONNX file size and inference time per image.\n"
            "Prints the table and writes comparison.md, comparison.json and comparison.png."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=(
            "examples:\n"
            "  python train.py -m model=cnn,cnn_deep,mobilenetv2,effb7_att ++model.pretrained=false \\\n"
            "      data.root=../shared/datasets/faces-mini trainer=cpu hydra.sweep.dir=multirun/backbones\n"
            "  python compare.py multirun/backbones\n"
            "  python compare.py runs/cnn/<run> runs/hfnet/<run> --out comparison/\n\n"
            "A run without metrics.json (crashed, interrupted) is listed as failed. Each best checkpoint is\n"
            "exported to a temporary ONNX file; if that fails, the checkpoint size and PyTorch eager timing\n"
            "are shown instead, marked (ckpt) and (torch)."
        ),
    )
    parser.add_argument("runs", nargs="+", help="a Hydra multirun directory, or run directories")
    parser.add_argument("--out", type=Path, default=None, help="folder for the outputs (default: the first argument)")
    parser.add_argument("--threads", type=positive_int, default=1, help="CPU threads for the timing (default: 1)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    def work() -> None:
        from deepfake.compare import compare

        rows = compare(args.runs, args.out, args.threads)
        out = args.out or Path(args.runs[0])
        print((out / "comparison.md").read_text())
        pictures = ", comparison.png" if any(r["status"] == "ok" for r in rows) else ""
        print(f"wrote comparison.md, comparison.json{pictures} to {out}")

    return run_command(work)
