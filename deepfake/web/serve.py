"""deepfake-serve: the web app in production, under gunicorn. ``make serve`` runs this, and so can an install
without the repository (``pip install``), which has no Makefile.

It only sets the environment that deepfake/web/gunicorn_conf.py reads and replaces itself with gunicorn, so
gunicorn's master gets the signals (Ctrl-C, SIGTERM from a process manager) directly, and none of the native
state that importing the package brings (OpenCV, onnxruntime) reaches the master: gunicorn_conf.py says why.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    env = os.environ  # HOST, PORT, WORKERS, THREADS as defaults, as platforms that set PORT expect
    parser = argparse.ArgumentParser(
        description="Serve the upload page and the JSON API with gunicorn (production).",
        epilog=(
            "Routes: GET / and /service (the page), POST /deepfake and /upload (form posts), "
            "POST /api/v1/predict (multipart field 'file'), GET /api/v1/openapi.json, /healthz, /readyz. "
            "Limits come from DEEPFAKE_MAX_MB, DEEPFAKE_MAX_PIXELS and DEEPFAKE_MAX_FILES. "
            "For development without gunicorn: python -m deepfake.web."
        ),
    )
    parser.add_argument("--host", default=env.get("HOST", "0.0.0.0"), help="address to listen on (default: 0.0.0.0)")
    parser.add_argument("--port", type=int, default=env.get("PORT", "5000"), help="port (default: 5000)")
    parser.add_argument(
        "--workers", type=int, default=env.get("WORKERS", "2"), help="processes, each with its model (default: 2)"
    )
    parser.add_argument("--threads", type=int, default=env.get("THREADS", "4"), help="threads per process (default: 4)")
    parser.add_argument("--model", default=None, help="model file from export.py (default: the bundled model)")
    parser.add_argument(
        "--keep-uploads",
        metavar="DIR",
        default=None,
        help="save accepted uploads in DIR under names the server makes (default: keep nothing)",
    )
    args = parser.parse_args(argv)
    if not 0 < args.port < 65536:
        parser.error(f"--port {args.port} is not a port number")
    for flag in ("workers", "threads"):
        if getattr(args, flag) < 1:
            parser.error(f"--{flag} {getattr(args, flag)} must be at least 1")
    return args


def gunicorn_command(args: argparse.Namespace) -> tuple[list[str], dict[str, str]]:
    """The gunicorn command line and its environment."""
    env = {
        **os.environ,
        "HOST": args.host,
        "PORT": str(args.port),
        "WORKERS": str(args.workers),
        "THREADS": str(args.threads),
    }
    if args.model:
        env["DEEPFAKE_MODEL"] = args.model
    if args.keep_uploads:
        env["DEEPFAKE_KEEP_UPLOADS"] = args.keep_uploads
    return [sys.executable, "-m", "gunicorn", "-c", str(Path(__file__).with_name("gunicorn_conf.py"))], env


def main(argv: list[str] | None = None) -> int:
    command, env = gunicorn_command(parse_args(argv))
    os.execve(command[0], command, env)
    return 0  # not reached: execve replaces this process


if __name__ == "__main__":
    sys.exit(main())
