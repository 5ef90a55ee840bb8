"""python -m deepfake.web: the development server (Werkzeug, debug off). Production: make serve (gunicorn)."""

from __future__ import annotations

import argparse
import os
import sys

from deepfake.cli import run_command
from deepfake.predictor import default_model_path
from deepfake.web import config


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m deepfake.web",
        description=(
            "Serve the upload page and the JSON API with Werkzeug's development server, for development only; "
            "production uses gunicorn: make serve."
        ),
        epilog=(
            "Routes: GET / and /service (the page), POST /deepfake and /upload (form posts), "
            "POST /api/v1/predict (multipart field 'file'), GET /api/v1/openapi.json, /healthz, /readyz. "
            "Options default to the DEEPFAKE_MODEL, DEEPFAKE_MAX_MB, DEEPFAKE_MAX_PIXELS, DEEPFAKE_MAX_FILES and "
            "DEEPFAKE_KEEP_UPLOADS environment variables where set."
        ),
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=5000, help="port (default: 5000)")
    parser.add_argument("--model", default=None, help=f"model file from export.py (default: {default_model_path()})")
    parser.add_argument(
        "--keep-uploads",
        metavar="DIR",
        default=None,
        help="save accepted uploads in DIR under names the server makes (default: keep nothing)",
    )
    parser.add_argument(
        "--max-mb", type=float, default=None, help=f"largest request body in MB ({config.DEFAULT_MAX_MB})"
    )
    parser.add_argument("--max-pixels", type=int, default=None, help="most pixels per image (40000000)")
    parser.add_argument(
        "--max-files", type=int, default=None, help=f"most images per request ({config.DEFAULT_MAX_FILES})"
    )
    args = parser.parse_args(argv)
    if not 0 < args.port < 65536:
        parser.error(f"--port {args.port} is not a port number")
    for flag in ("max_mb", "max_pixels", "max_files"):
        value = getattr(args, flag)
        if value is not None and value <= 0:
            parser.error(f"--{flag.replace('_', '-')} {value} must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    overrides = {
        "MODEL": args.model,
        "KEEP_UPLOADS": args.keep_uploads,
        "MAX_CONTENT_LENGTH": None if args.max_mb is None else int(args.max_mb * config.MB),
        "MAX_PIXELS": args.max_pixels,
        "MAX_FILES": args.max_files,
    }

    def serve() -> None:
        from deepfake.web import create_app

        app = create_app({k: v for k, v in overrides.items() if v is not None})
        print(f"development server on http://{args.host}:{args.port}/ (production: make serve)", file=sys.stderr)
        # Never the debugger: it runs arbitrary code for whoever can reach the port.
        app.run(host=args.host, port=args.port, debug=False, use_reloader=False, threaded=True)

    return run_command(serve, "python -m deepfake.web")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
