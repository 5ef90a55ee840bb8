"""One split's items: an image decoded, optionally given surroundings and augmented, and preprocessed; or a
pseudo-fake pair (:mod:`deepfake.data.pairs`), the real face and its blend augmented alike."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, default_collate

from deepfake.data.pairs import PseudoFakes
from deepfake.errors import ImageError
from deepfake.faces.dataset import read_outline
from deepfake.images import read_image
from deepfake.preprocess import Preprocess
from deepfake.samples import Sample
from deepfake.surroundings import Surroundings, inside_share

log = logging.getLogger(__name__)


class ImageDataset(Dataset):
    """Decodes, optionally augments and preprocesses one image per item.

    An item is ``(image, label, dataset index)``, the index into ``datasets`` (the run's dataset names) of the
    sample's dataset. An image that fails to decode yields None instead of raising, so one bad
    file cannot end a long run; :func:`collate_skip_bad` drops it from the batch.
    """

    def __init__(
        self,
        samples: Sequence[Sample],
        preprocess: Preprocess,
        augment=None,
        datasets: Sequence[str] = (),
        pseudo_fakes: PseudoFakes | None = None,
        surroundings: Surroundings | None = None,
    ):
        self.samples = list(samples)
        self.preprocess = preprocess
        self.augment = augment
        self.surroundings = surroundings
        self.pseudo = pseudo_fakes if pseudo_fakes and pseudo_fakes.count and pseudo_fakes.sources else None
        # Items: these samples one by one, then the pseudo-fake pairs.
        self.singles = list(range(len(self.samples)))
        if self.pseudo and self.pseudo.pairs_only:
            paired = set(self.pseudo.sources)
            self.singles = [i for i in self.singles if i not in paired]
        index = {name: i for i, name in enumerate(datasets)}
        of_sample = [index.get(s.dataset, 0) for s in self.samples]
        self.dataset_index = [of_sample[i] for i in self.singles]
        if self.pseudo:  # pair k comes from sources[k % len(sources)], of that sample's dataset
            sources = self.pseudo.sources
            self.dataset_index += [of_sample[sources[k % len(sources)]] for k in range(self.pseudo.count)]

    def __len__(self) -> int:
        return len(self.dataset_index)

    def _augmented(self, rgb: np.ndarray) -> np.ndarray:
        """uint8 (H, W, 3), or (N, H, W, 3) that all get the same random augmentation (torchvision v2 draws one
        set of parameters per call)."""
        if self.augment is None:
            return rgb
        t = torch.from_numpy(np.ascontiguousarray(rgb))
        t = t.permute(2, 0, 1) if t.ndim == 3 else t.permute(0, 3, 1, 2)
        t = self.augment(t)
        return (t.permute(1, 2, 0) if t.ndim == 3 else t.permute(0, 2, 3, 1)).numpy()

    def _resized(self, sample: Sample, images: list[np.ndarray]) -> np.ndarray:
        """``images`` (the sample's crop, or crops of its size made from it) at model size, stacked when several,
        their outside filled alike by :attr:`surroundings` when it is on and the crop reaches past its image."""
        side = images[0].shape[0]
        resized = np.stack([self.preprocess.resize(rgb) for rgb in images])
        outline = read_outline(sample.crop) if self.surroundings is not None and sample.crop else None
        if outline is not None:
            share = inside_share(outline, side, self.preprocess.image_size)
            seed = int(torch.randint(0, 2**62, (1,)).item())  # the worker's RNG, seeded by Lightning per worker
            resized = self.surroundings(resized, share, np.random.default_rng(seed))
        return resized if len(images) > 1 else resized[0]

    def __getitem__(self, index: int):
        if not 0 <= index < len(self):
            raise IndexError(index)  # also what ends iteration over a dataset (the sequence protocol)
        if index >= len(self.singles):
            return self.pair(index - len(self.singles))
        sample = self.samples[self.singles[index]]
        try:
            rgb = self._resized(sample, [read_image(sample.source)])
        except ImageError as exc:
            log.warning("skipping %s: %s", sample.source, exc)
            return None
        x = torch.from_numpy(self.preprocess.normalise(self._augmented(rgb)))
        return x, torch.tensor(sample.label, dtype=torch.float32), self.dataset_index[index]

    def blend(self, k: int, seed: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Pair k before resizing and augmentation: (real, pseudo-fake, mask) at the resolution of the crop.
        ``seed``: this fixed blend rather than the split's (a fixed one, or a fresh draw in training)."""
        pseudo = self.pseudo
        position = k % len(pseudo.sources)
        sample = self.samples[pseudo.sources[position]]
        seed = pseudo.seed if seed is None else seed
        if seed is None:
            seed = int(torch.randint(0, 2**62, (1,)).item())  # the worker's RNG, seeded by Lightning per worker
        else:
            seed = seed * 1_000_003 + k
        rgb = read_image(sample.source)
        fake, mask = pseudo.blender.blend(rgb, pseudo.points[position], np.random.default_rng(seed))
        return rgb, fake, mask

    def pair_source(self, k: int) -> Sample:
        """The real sample pair k is blended from."""
        return self.samples[self.pseudo.sources[k % len(self.pseudo.sources)]]

    def pair(self, k: int):
        """[(real, 0, dataset), (pseudo-fake, 1, dataset)]: one blend and its source, augmented alike."""
        try:
            real, fake, _ = self.blend(k)
        except ImageError as exc:
            log.warning("skipping pseudo-fake %d: %s", k, exc)
            return None
        both = self._augmented(self._resized(self.pair_source(k), [real, fake]))
        dataset = self.dataset_index[len(self.singles) + k]
        return [
            (torch.from_numpy(self.preprocess.normalise(img)), torch.tensor(float(label)), dataset)
            for label, img in enumerate(both)
        ]


def init_worker(worker_id: int) -> None:
    """Seed the worker as Lightning does, and keep OpenCV to one thread per worker process."""
    import cv2
    from lightning.fabric.utilities.seed import pl_worker_init_function

    # 0 (run sequentially), not 1: setNumThreads(1) tears down the thread pool inherited from the parent,
    # and when the parent had started one (cv2.applyColorMap, or cvtColor/resize of a large image), the
    # forked worker waits forever for that pool's threads, which do not exist in the child.
    cv2.setNumThreads(0)
    pl_worker_init_function(worker_id)


def collate_skip_bad(batch):
    """Drop unreadable items (None) and flatten pseudo-fake pairs (lists) into the batch."""
    batch = [one for item in batch if item is not None for one in (item if isinstance(item, list) else [item])]
    if not batch:
        return None
    return default_collate(batch)
