"""deepfake-serve and ``make serve``: the web app, the one launcher.

By default it serves in production under gunicorn: it only sets the environment that
deepfake/web/gunicorn_conf.py reads and replaces itself with gunicorn, so gunicorn's master gets the signals
(Ctrl-C, SIGTERM from a process manager) directly, and none of the native state that importing the package
brings (OpenCV, onnxruntime) reaches the master: gunicorn_conf.py says why. With ``--dev`` it runs Werkzeug's
development server in this process instead (``python -m deepfake.web`` is ``deepfake-serve --dev``).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from deepfake.cli import run_command
from deepfake.web import config

ROUTES = (
    "Routes: GET / and /service (the page), POST /deepfake and /upload (form posts), "
    "POST /api/v1/predict (multipart field 'file'), GET /api/v1/openapi.json, /healthz, /readyz."
)
# The options that become the app's settings, and the environment variables gunicorn's workers read them from.
LIMITS = {"max_mb": "DEEPFAKE_MAX_MB", "max_pixels": "DEEPFAKE_MAX_PIXELS", "max_files": "DEEPFAKE_MAX_FILES"}


def parse_args(argv: list[str] | None = None, *, dev: bool = False, prog: str | None = None) -> argparse.Namespace:
    """``dev``: the default of --dev (True for ``python -m deepfake.web``)."""
    env = os.environ  # HOST, PORT, WORKERS, THREADS as defaults, as platforms that set PORT expect
    parser = argparse.ArgumentParser(
        prog=prog,
        description=(
            "Serve the upload page and the JSON API: with gunicorn (production), or with --dev, Werkzeug's "
            "development server (development only: one process, no timeouts)."
        ),
        epilog=(
            f"{ROUTES} Options default to the DEEPFAKE_MODEL, DEEPFAKE_MAX_MB, DEEPFAKE_MAX_PIXELS, DEEPFAKE_MAX_FILES "
            "and DEEPFAKE_KEEP_UPLOADS environment variables where set, and --host, --port, --workers and --threads "
            "to HOST, PORT, WORKERS and THREADS."
        ),
    )
    parser.add_argument(
        "--dev",
        action=argparse.BooleanOptionalAction,
        default=dev,
        help="Werkzeug's development server instead of gunicorn (default: %(default)s)",
    )
    parser.add_argument(
        "--host",
        default=env.get("HOST"),
        help="address to listen on (default: 0.0.0.0 under gunicorn, 127.0.0.1 with --dev)",
    )
    parser.add_argument("--port", type=int, default=env.get("PORT", "5000"), help="port (default: 5000)")
    parser.add_argument(
        "--workers", type=int, default=env.get("WORKERS", "2"), help="gunicorn processes, each with its model (2)"
    )
    parser.add_argument("--threads", type=int, default=env.get("THREADS", "4"), help="threads per process (4)")
    parser.add_argument("--model", default=None, help="model file from export.py (default: the bundled model)")
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
    for flag in ("workers", "threads", *LIMITS):
        value = getattr(args, flag)
        if value is not None and value <= 0:
            parser.error(f"--{flag.replace('_', '-')} {value} must be positive")
    args.host = args.host or ("127.0.0.1" if args.dev else "0.0.0.0")
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
    env.update({name: str(getattr(args, flag)) for flag, name in LIMITS.items() if getattr(args, flag) is not None})
    gunicorn_conf = Path(config.__file__).with_name("gunicorn_conf.py")
    return [sys.executable, "-m", "gunicorn", "-c", str(gunicorn_conf)], env


def serve_dev(args: argparse.Namespace) -> None:
    from deepfake.web import create_app

    overrides = {
        "MODEL": args.model,
        "KEEP_UPLOADS": args.keep_uploads,
        "MAX_CONTENT_LENGTH": None if args.max_mb is None else int(args.max_mb * config.MB),
        "MAX_PIXELS": args.max_pixels,
        "MAX_FILES": args.max_files,
    }
    app = create_app({k: v for k, v in overrides.items() if v is not None})
    print(f"development server on http://{args.host}:{args.port}/ (production: deepfake-serve)", file=sys.stderr)
    # Never the debugger: it runs arbitrary code for whoever can reach the port.
    app.run(host=args.host, port=args.port, debug=False, use_reloader=False, threaded=True)


def main(argv: list[str] | None = None, *, dev: bool = False, prog: str | None = None) -> int:
    """deepfake-serve's exit status (under gunicorn, this process becomes gunicorn's master and never returns)."""
    args = parse_args(argv, dev=dev, prog=prog)
    if args.dev:
        return run_command(lambda: serve_dev(args), prog)
    command, env = gunicorn_command(args)
    os.execve(command[0], command, env)
    return 0  # not reached: execve replaces this process


if __name__ == "__main__":
    sys.exit(main())
