"""One function over many images in worker processes, in input order, with a progress bar: how a dataset's face
crops (:mod:`deepfake.faces.dataset`) and landmarks (:mod:`deepfake.faces.landmarks`) are computed."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from typing import TypeVar

from tqdm.auto import tqdm

R = TypeVar("R")
# Fewer tasks than this run in this process: starting workers would cost more than it saves.
MIN_PARALLEL = 64


def _in_worker(fn: Callable[..., R], args: tuple) -> R:
    import cv2

    # 0 (sequential), not 1: 1 tears down the OpenCV thread pool inherited from the parent and, if the parent had
    # started one, waits forever on its threads (see deepfake.data.dataset.init_worker). The pool uses every core
    # already.
    cv2.setNumThreads(0)
    return fn(*args)


def map_images(
    fn: Callable[..., R], tasks: Sequence[tuple], *, desc: str, workers: int | None = None, progress: bool = True
) -> list[R]:
    """``fn(*task)`` for every task, in input order, in ``workers`` processes (default: one per core). ``fn`` must be
    a module-level function, so that workers can import it."""
    workers = workers or os.cpu_count() or 1
    bar = tqdm(total=len(tasks), desc=desc, unit="img", disable=not progress or None, leave=False)
    results: list[R] = []
    if workers <= 1 or len(tasks) < MIN_PARALLEL:
        for task in tasks:
            results.append(fn(*task))
            bar.update()
    else:
        with ProcessPoolExecutor(workers) as pool:
            for result in pool.map(partial(_in_worker, fn), tasks, chunksize=16):
                results.append(result)
                bar.update()
    bar.close()
    return results
