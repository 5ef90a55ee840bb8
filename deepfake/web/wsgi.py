"""The WSGI entry for gunicorn: ``gunicorn deepfake.web.wsgi:app``; deepfake-serve adds gunicorn_conf.py."""

from __future__ import annotations

import sys

from deepfake.errors import UserError
from deepfake.web import create_app

try:
    app = create_app()
except UserError as exc:  # a bad DEEPFAKE_* setting: one line, and exit code 3 makes gunicorn stop, not retry
    print(f"error: {exc}", file=sys.stderr)
    sys.exit(3)
