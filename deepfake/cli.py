"""What every command line shares (the commands themselves are in :mod:`deepfake.commands`): a user error is one
line on stderr and exit code 2, Ctrl-C is 130.

    train.py, export.py        hydra_command(): Hydra's own errors (an unknown key or option, a missing
                               value) are caught before Hydra starts, so they read like ours
    every other command        run_command() around its work, once

A command that needs the ``train`` extra in a base install (torch, Lightning, Hydra, ...) says which
package is missing and the pip command that brings it. This module imports only the standard library
and :mod:`deepfake.errors`, so it works in a base install.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from collections.abc import Callable
from pathlib import Path

from deepfake.errors import ConfigError, UserError

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130  # as shells report a process ended by Ctrl-C
TRAIN_EXTRA = "pip install 'deepfake[train]'"
# train.py and export.py compose their configs from here: they are commands of the repository checkout.
CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"


def error(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return EXIT_USER_ERROR


def missing_package(exc: ModuleNotFoundError, command: str) -> str | None:
    """The message for a dependency a base install lacks, or None when ``exc`` is about something else."""
    package = (exc.name or "").partition(".")[0]
    if not package or package == "deepfake":
        return None
    return f"{command} needs the Python package {package!r}, which the base install leaves out: {TRAIN_EXTRA}"


def run_command(work: Callable[[], int | None], command: str | None = None) -> int:
    """A command line's exit status: ``work``'s own (None: 0); 2 with one ``error: ...`` line on stderr for a
    UserError or a missing optional dependency; 130 on Ctrl-C."""
    command = command or Path(sys.argv[0]).name
    try:
        return work() or 0
    except UserError as exc:
        return error(str(exc))
    except ModuleNotFoundError as exc:
        message = missing_package(exc, command)
        if message is None:
            raise
        return error(message)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


def threshold_arg(text: str) -> float:
    """argparse type of --threshold: the contract's own check, as a usage error."""
    from deepfake.preprocess import check_threshold

    try:
        return check_threshold(text, "--threshold")
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_scoring_options(parser: argparse.ArgumentParser, *, batch_size: int) -> None:
    """--threshold and --batch-size, as infer.py and evaluate.py take them."""
    from deepfake.preprocess import DEFAULT_THRESHOLD

    parser.add_argument(
        "--threshold",
        type=threshold_arg,
        default=None,
        help=f"decision threshold on p_fake (default: the model file's own; {DEFAULT_THRESHOLD} for a checkpoint)",
    )
    parser.add_argument(
        "--batch-size",
        type=positive_int,
        default=batch_size,
        help=f"images per onnxruntime call (default: {batch_size})",
    )


def positive_int(text: str) -> int:
    """argparse type of counts such as --batch-size."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} must be a whole number of at least 1")
    return value


# ---------------------------------------------------------------------------
# Hydra commands


def hydra_command(
    task: Callable,
    *,
    config_dir: Path,
    config_name: str,
    schemas: Callable[[], None] | None = None,
    argv: list[str] | None = None,
) -> int:
    """Run ``task(cfg)`` as a Hydra app (overrides, ``-m`` sweeps, ``--help``) with this module's error handling.

    Hydra answers a bad override over several lines, with exit code 1, and a task's own exception with a
    traceback. Here the overrides are composed first and any problem is one line and exit 2; inside the task,
    a UserError is one line and exit 2 as in every other command. ``schemas`` registers structured configs
    with Hydra's ConfigStore before anything is composed.
    """
    command = Path(sys.argv[0]).name
    argv = sys.argv[1:] if argv is None else argv
    try:
        import hydra

        if schemas:
            schemas()
    except ModuleNotFoundError as exc:
        return error(missing_package(exc, command) or str(exc))
    problem = check_overrides(config_dir, config_name, argv)
    if problem:
        return error(problem)

    @hydra.main(version_base="1.3", config_path=str(Path(config_dir).resolve()), config_name=config_name)
    def main(cfg) -> None:
        status = run_command(lambda: task(cfg), command)
        if status:
            sys.exit(status)

    main()
    return 0


def check_overrides(config_dir: Path, config_name: str, argv: list[str]) -> str | None:
    """Compose the config of every run the command line asks for; the first problem in one line, or None."""
    from hydra import compose, initialize_config_dir
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException, MissingConfigException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    flags = [arg for arg in argv if arg.startswith("-")]
    multirun = any(flag in ("-m", "--multirun") for flag in flags)
    if any(flag not in ("-m", "--multirun") for flag in flags):
        return None  # --help, --cfg, --info, ...: Hydra's own options
    try:
        parsed = OverridesParser.create().parse_overrides([arg for arg in argv if not arg.startswith("-")])
    except HydraException as exc:
        return _one_line(exc)
    choices = []
    for override in parsed:
        if multirun and override.is_sweep_override():
            if not override.is_discrete_sweep():
                return None  # intervals and the like are for sweeper plugins: leave them to Hydra
            key = override.get_key_element()
            choices.append([f"{key}={value}" for value in override.sweep_string_iterator()])
        else:
            choices.append([override.input_line])
    with initialize_config_dir(config_dir=str(Path(config_dir).resolve()), version_base="1.3"):
        for overrides in itertools.product(*choices):
            try:
                cfg = compose(config_name, overrides=list(overrides))
            except MissingConfigException as exc:
                options = f" (options: {', '.join(exc.options)})" if exc.options else ""
                return _one_line(exc) + options
            except (HydraException, OmegaConfBaseException) as exc:
                return _one_line(exc)
            missing = _missing_keys(OmegaConf.to_container(cfg, resolve=False))
            if missing:
                return f"{missing[0]} needs a value: add {missing[0]}=... to the command line"
    return None


def _missing_keys(node, prefix: str = "") -> list[str]:
    """Keys still ``???`` in a config (as a container, unresolved: ${hydra:...} only resolves inside a run)."""
    if isinstance(node, dict):
        return [k for key, value in node.items() for k in _missing_keys(value, f"{prefix}{key}.")]
    return [prefix.rstrip(".")] if node == "???" else []


def _one_line(exc: BaseException) -> str:
    """An exception's first paragraph and its cause's first line, as one line (Hydra's messages span several)."""
    paragraph = str(exc).strip().split("\n\n")[0]
    lines = [line.strip() for line in paragraph.splitlines() if line.strip()]
    cause = str(exc.__cause__ or "").strip().splitlines()
    if cause and cause[0].strip() not in lines:
        lines.append(cause[0].strip())
    return " ".join(lines)
