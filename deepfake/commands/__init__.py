"""The command lines: each parses its arguments, calls the library and prints what it returns.

One module a command, each wrapped once by :func:`deepfake.cli.run_command` (a user error is one line and exit 2):

    train.py, export.py       train, export       Hydra apps (deepfake.cli.hydra_command)
    infer.py, deepfake-infer  infer               verdicts for images and videos (torch-free)
    evaluate.py               evaluate            metrics, pictures, cross-dataset tables
    compare.py                compare             trained runs side by side
    report.py                 report              what a dataset holds
    deepfake-serve            serve               the web app: gunicorn, or Werkzeug with --dev
    python -m deepfake.faces  faces               the face crops of a folder

Nothing in the library imports this package. Commands that need the ``train`` extra import the library inside
:func:`~deepfake.cli.run_command`, so a base install answers with the pip command instead of a traceback.
"""
