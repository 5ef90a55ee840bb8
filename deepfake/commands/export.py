"""export.py: a checkpoint to a checked ONNX file, a Hydra app over configs/export.yaml
(``python export.py --help`` lists the options, :class:`deepfake.export.ExportOptions`).

The work is :func:`deepfake.export.export`'s; this module prints what it found.
"""

from __future__ import annotations

import sys

from deepfake.cli import CONFIG_DIR, hydra_command


def run(cfg) -> None:
    from deepfake.export import describe_export, export

    print(describe_export(export(cfg)))


def schemas() -> None:
    from deepfake.export.options import store_config

    store_config()


def main(argv: list[str] | None = None) -> int:
    """export.py's exit status."""
    return hydra_command(run, config_dir=CONFIG_DIR, config_name="export", schemas=schemas, argv=argv)


if __name__ == "__main__":
    sys.exit(main())
