"""Which images to score: a dataset's split as a model was trained with it (its run's split.csv, else made again
from the data settings its ONNX metadata records), else the dataset's own or training's default split."""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from deepfake.errors import DataError
from deepfake.predictor import Predictor
from deepfake.samples import SPLIT, Sample, dataset_name, find_manifest, find_samples, read_split, split_digest

log = logging.getLogger(__name__)


@dataclass
class TrainingSplit:
    """Where a model's training split can be found again: the split.csv of its run (exact), else the data settings
    export.py stored in its metadata (the split is made again from them and checked against their digest)."""

    model: str
    split_csv: Path | None = None
    datasets: list[dict] = field(default_factory=list)  # deepfake.datasets.DatasetSpec dicts, with layout and digest
    seed: int = SPLIT.seed

    @classmethod
    def of(cls, model: str, run: Path | None, predictor: Predictor) -> TrainingSplit:
        """``run``: the training run the model was given as (a run directory or checkpoint), if any."""
        split_csv = run / "split.csv" if run and (run / "split.csv").is_file() else None
        data = predictor.contract.data
        datasets = list(data.get("datasets", {}).values()) if isinstance(data, dict) else []
        if not datasets and isinstance(data, dict) and isinstance(data.get("root"), str):
            # Models exported before several datasets: one root, split by file with training's defaults.
            datasets = [{"root": data["root"], "name": dataset_name(data["root"])}]
        seed = int(data.get("seed", SPLIT.seed)) if isinstance(data, dict) else SPLIT.seed
        return cls(model, split_csv, datasets, seed)

    @functools.cached_property
    def split_rows(self) -> list[Sample]:
        """The run's split.csv, read once however many datasets ask."""
        return read_split(self.split_csv) if self.split_csv else []

    def samples(self, root: Path, name: str, split: str) -> tuple[list[Sample], str, str] | None:
        """The ``split`` of the dataset at ``root`` as this model was trained with it, the layout it was read as,
        and where it came from; None when the model was not trained on it."""
        mine = [s for s in self.split_rows if s.dataset == name or Path(s.path).is_relative_to(root)]
        if mine:
            return (
                [s for s in mine if s.split == split],
                "split.csv",
                f"{self.split_csv} ({self.model}'s training split)",
            )
        for spec in self.datasets:
            if Path(spec["root"]).expanduser().resolve() == root or spec.get("name") == name:
                return self._split_again(root, name, split, spec)
        return None

    def _split_again(self, root: Path, name: str, split: str, spec: dict) -> tuple[list[Sample], str, str]:
        samples, layout = find_samples(
            root,
            manifest=spec.get("manifest"),
            group_by=spec.get("group_by"),
            val_fraction=float(spec.get("val_fraction", SPLIT.val_fraction)),
            test_fraction=float(spec.get("test_fraction", SPLIT.test_fraction)),
            seed=self.seed,
            name=name,
        )
        how = f"{self.model}'s training split, made again from its metadata"
        expected = spec.get("test_files_sha256")
        if expected and split_digest(samples, root) != expected:
            log.warning(
                "%s: the test split made again from %s's settings differs from the one it was trained with "
                "(files added or removed since?): scores may include training images",
                root,
                self.model,
            )
            how += ", NOT the same files"
        return [s for s in samples if s.split == split], layout, how


def select_samples(
    root: str | Path,
    split: str | None = None,
    seed: int = SPLIT.seed,
    *,
    trained: Sequence[TrainingSplit] = (),
    manifest: str | None = None,
    group_by: str | None = None,
) -> tuple[list[Sample], str, str]:
    """Every labelled image of any layout data.py reads, its layout, and where its split came from.

    ``split`` keeps one split: the one a model of ``trained`` was trained with, when one was trained on this
    dataset; else the dataset's own (a pre-split tree, a manifest's split column), else the seeded 80/10/10 split
    that training makes by default, by ``group_by`` when given. A folder's manifest (metadata.csv) is read when
    ``manifest`` is not given.
    """
    path = Path(root).expanduser()
    if not path.exists():
        raise DataError(f"--data {root}: no such file or directory")
    path = path.resolve()
    name = dataset_name(path)
    found = None
    for model in trained if split else ():
        if (found := model.samples(path, name, split)) is not None:
            break
    if found is not None:
        samples, layout, how = found
    else:
        manifest = manifest or find_manifest(path)
        samples, layout = find_samples(path, seed=seed, manifest=manifest, group_by=group_by, name=name)
        how = "all images"
        if split:
            samples = [s for s in samples if s.split == split]
            how = f"the dataset's own {split} split" + (f" by {group_by}" if group_by else "")
    if not samples:
        raise DataError(f"--data {root}: no images" + (f" in the {split} split" if split else ""))
    return samples, layout, how
