"""Training curves of a run: per-epoch loss, accuracy and AUROC, train against val, as ``curves.png``.

Read from the CSV logger's ``logs/version_*/metrics.csv``. A resumed run has several versions
(a later one wins for an epoch both logged); a run that stopped early or never validated simply
has fewer points or an empty panel.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

PANELS = (("loss", "loss (BCE)"), ("acc", "accuracy"), ("auroc", "ROC AUC"))


def _version(path: Path) -> int:
    match = re.fullmatch(r"version_(\d+)", path.parent.name)
    return int(match.group(1)) if match else -1


def read_epoch_metrics(run_dir: str | Path) -> dict[int, dict[str, float]]:
    """``{epoch: {"train/loss": ..., "val/auroc": ...}}`` over every logger version of the run."""
    epochs: dict[int, dict[str, float]] = {}
    for path in sorted(Path(run_dir).glob("logs/version_*/metrics.csv"), key=_version):
        with open(path, newline="", encoding="utf-8") as fh:
            for row in csv.DictReader(fh):
                # Lightning writes train and val metrics of one epoch on separate rows, lr rows without an epoch.
                try:
                    epoch = int(float(row.get("epoch") or ""))
                except ValueError:
                    continue
                for key, value in row.items():
                    # trainer.test logs the best checkpoint's scores at the epoch after the last: not a curve.
                    if key in ("epoch", "step") or not key or key.startswith("test/") or value in ("", None):
                        continue
                    try:
                        epochs.setdefault(epoch, {})[key] = float(value)
                    except ValueError:
                        continue
    return dict(sorted(epochs.items()))


def model_name(run_dir: str | Path) -> str:
    """The run's ``model.name`` from its config.yaml (or Hydra's copy), "" when neither can be read."""
    from omegaconf import OmegaConf

    for config in (Path(run_dir) / "config.yaml", Path(run_dir) / ".hydra" / "config.yaml"):
        try:
            return str(OmegaConf.load(config).model.name)
        except Exception:  # missing, unreadable or without model.name: try the next one
            continue
    return ""


def plot_curves(run_dir: str | Path, out: str | Path | None = None) -> Path | None:
    """Write ``curves.png`` (or ``out``); returns its path, or None when the run logged no epoch yet."""
    from matplotlib.figure import Figure  # no pyplot: no global backend state, safe in any process

    run_dir = Path(run_dir)
    epochs = read_epoch_metrics(run_dir)
    if not epochs:
        return None
    out = Path(out) if out else run_dir / "curves.png"
    fig = Figure(figsize=(13, 4), layout="constrained")
    axes = fig.subplots(1, 3)
    val_auroc = {e: m["val/auroc"] for e, m in epochs.items() if "val/auroc" in m}
    best = max(val_auroc, key=val_auroc.get) if val_auroc else None
    for ax, (metric, label) in zip(axes, PANELS, strict=True):
        drawn = False
        for stage, style in (("train", "o-"), ("val", "s-")):
            points = [(e, m[f"{stage}/{metric}"]) for e, m in epochs.items() if f"{stage}/{metric}" in m]
            if points:
                xs, ys = zip(*points, strict=True)
                ax.plot(xs, ys, style, label=stage, markersize=4)
                drawn = True
        if best is not None:
            ax.axvline(best, color="grey", linestyle=":", label=f"best val AUROC (epoch {best})")
        if not drawn:
            ax.text(0.5, 0.5, f"{label}: not logged", ha="center", va="center", transform=ax.transAxes)
        else:
            ax.legend(fontsize="small")
        ax.set_title(label)
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
    name = model_name(run_dir)
    fig.suptitle(f"Training curves: {name + ', ' if name else ''}{run_dir.name} ({len(epochs)} epochs)")
    fig.savefig(out, dpi=100)
    return out
