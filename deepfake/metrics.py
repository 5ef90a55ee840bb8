"""How a detector is scored, in one place: training's metrics.json, evaluate.py, export.py's fp16/int8
report, compare.py and the robustness table all compute their figures here, under the same names.

Fake (label 1) is the positive class. The names, in every file the project writes:

    acc, precision, recall, f1     at the decision threshold (p_fake >= threshold reads "fake")
    auroc, average_precision       from the ranking of p_fake alone
    eer, eer_threshold             where reals called fake and fakes passed as real are equally common
    ece                            expected calibration error: how far the stated probabilities are from
                                   the observed frequencies (:func:`ece`)

Two metrics had a second name in files written before; those files keep it beside the first
(``METRIC_ALIASES``): ``accuracy`` for acc and ``roc_auc`` for auroc.

The numbers come from torchmetrics, streamed batch by batch during training (:func:`metric_collection`)
or over whole arrays (:func:`scores`, :func:`binary_metrics`): the same classes either way. Calibration
(:func:`ece`, :func:`reliability_bins`, :func:`fit_temperature`) is plain numpy, so its bins can be drawn.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torchmetrics
from torchmetrics import classification as C
from torchmetrics.functional import classification as F

from deepfake.preprocess import DEFAULT_THRESHOLD, LABELS

METRIC_ALIASES = {"accuracy": "acc", "roc_auc": "auroc"}


def _metrics(threshold: float) -> dict[str, torchmetrics.Metric]:
    return {
        "acc": C.BinaryAccuracy(threshold),
        "precision": C.BinaryPrecision(threshold),
        "recall": C.BinaryRecall(threshold),
        "f1": C.BinaryF1Score(threshold),
        "auroc": C.BinaryAUROC(),
    }


def metric_collection(prefix: str, threshold: float = DEFAULT_THRESHOLD) -> torchmetrics.MetricCollection:
    """Streaming acc, precision, recall, f1 and auroc for Lightning, logged as ``<prefix><name>``
    (train/acc, val/auroc, test/f1, ...)."""
    return torchmetrics.MetricCollection(_metrics(threshold), prefix=prefix)


def _tensors(p_fake, labels) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.as_tensor(np.asarray(p_fake, np.float32)), torch.as_tensor(np.asarray(labels, np.int64))


def both_classes(labels) -> bool:
    labels = np.asarray(labels)
    return bool((labels == 0).any() and (labels == 1).any())


def scores(p_fake, labels, threshold: float) -> dict[str, float | None]:
    """acc, precision, recall, f1 and auroc of probabilities ``p_fake`` against ``labels`` (0 real, 1 fake).
    auroc is None when only one class is present: no ranking to score."""
    p, y = _tensors(p_fake, labels)
    out: dict[str, float | None] = {}
    for name, metric in _metrics(threshold).items():
        out[name] = float(metric(p, y)) if name != "auroc" or both_classes(labels) else None
    return out


def equal_error_rate(p_fake, labels) -> tuple[float, float]:
    """(EER, threshold): where the false positive rate (reals called fake) equals the false negative
    rate (fakes passed as real), linearly interpolated between the two ROC points around the
    crossing; the threshold is that of the nearer point."""
    fpr, tpr, thresholds = F.binary_roc(*_tensors(p_fake, labels))
    fpr, fnr, thresholds = fpr.double().numpy(), 1.0 - tpr.double().numpy(), thresholds.double().numpy()
    diff = fnr - fpr  # 1 at the strictest threshold, -1 at the loosest, never increasing in between
    i = int(np.argmax(diff <= 0))
    if i == 0 or diff[i] == 0:
        return float(fpr[i]), float(thresholds[i])
    t = diff[i - 1] / (diff[i - 1] - diff[i])
    eer = fpr[i - 1] + t * (fpr[i] - fpr[i - 1])
    return float(eer), float(thresholds[i] if t >= 0.5 else thresholds[i - 1])


def roc_curve(p_fake, labels) -> tuple[np.ndarray, np.ndarray]:
    """(false positive rate, true positive rate) at every threshold, for plotting."""
    fpr, tpr, _ = F.binary_roc(*_tensors(p_fake, labels))
    return fpr.numpy(), tpr.numpy()


def binary_metrics(p_fake, labels, threshold: float) -> dict:
    """The full report: :func:`scores`, average precision, EER, counts, the confusion matrix (rows true,
    columns predicted) and a per-class report, with the aliases of ``METRIC_ALIASES``. Ranking metrics are None
    when one class is absent."""
    p, y = _tensors(p_fake, labels)
    both = both_classes(labels)
    metrics = {
        "threshold": float(threshold),
        "n_images": len(y),
        "n_real": int((y == 0).sum()),
        "n_fake": int((y == 1).sum()),
        **scores(p_fake, labels, threshold),
        "average_precision": float(F.binary_average_precision(p, y)) if both else None,
        "eer": None,
        "eer_threshold": None,
        "ece": ece(p_fake, labels) if len(y) else None,
    }
    if both:
        metrics["eer"], metrics["eer_threshold"] = equal_error_rate(p_fake, labels)
    matrix = F.binary_confusion_matrix(p, y, threshold).tolist()
    metrics["confusion_matrix"] = {"labels": list(LABELS), "rows": "true", "columns": "predicted", "matrix": matrix}
    metrics["classification_report"] = classification_report((p >= threshold).long(), y)
    return with_aliases(metrics)


def with_aliases(metrics: dict) -> dict:
    """``metrics`` with the older name of each metric that has one (``accuracy``, ``roc_auc``) beside it."""
    return {**metrics, **{alias: metrics[name] for alias, name in METRIC_ALIASES.items() if name in metrics}}


def classification_report(predicted, labels) -> dict:
    """Precision, recall, F1 and support per class (real, fake), their macro and support-weighted averages."""
    per_class = {
        name: fn(predicted, labels, num_classes=2, average=None).tolist()
        for name, fn in (
            ("precision", F.multiclass_precision),
            ("recall", F.multiclass_recall),
            ("f1", F.multiclass_f1_score),
        )
    }
    support = [int((labels == k).sum()) for k in range(2)]
    report = {
        label: {**{m: float(v[k]) for m, v in per_class.items()}, "support": support[k]}
        for k, label in enumerate(LABELS)
    }
    total = sum(support) or 1
    report["macro avg"] = {m: float(np.mean(v)) for m, v in per_class.items()} | {"support": sum(support)}
    report["weighted avg"] = {m: float(np.dot(v, support) / total) for m, v in per_class.items()} | {
        "support": sum(support)
    }
    return report


# ---------------------------------------------------------------------------
# Calibration: do the probabilities mean what they say?

ECE_BINS = 15
# The search range of the temperature, in log space: wide enough for any trained model (p = sigmoid(logit / T)),
# narrow enough that a degenerate validation set cannot push p_fake to exactly 0 or 1 in float32.
TEMPERATURE_RANGE = (1e-2, 1e2)


def reliability_bins(p_fake, labels, bins: int = ECE_BINS, by: str = "confidence") -> dict[str, np.ndarray]:
    """Images in ``bins`` equal-width bins over [0, 1], as a reliability diagram draws them.

    ``by="confidence"``: binned by the probability of the predicted class, max(p_fake, 1 - p_fake) (so the bins
    below 0.5 stay empty), and ``observed`` is the share predicted right: the standard definition (Guo et al.
    2017), the one :func:`ece` uses. ``by="p_fake"``: binned by p_fake itself, and ``observed`` is the share
    that is fake, which reads more directly for a detector. Returns ``edges`` (bins + 1), and per bin ``count``,
    ``predicted`` (mean confidence or mean p_fake) and ``observed``; the last two are NaN in empty bins.
    """
    if by not in ("confidence", "p_fake"):
        raise ValueError(f"by={by!r} is not 'confidence' or 'p_fake'")
    p = np.asarray(p_fake, np.float64).reshape(-1)
    y = np.asarray(labels).reshape(-1).astype(np.float64)
    if p.shape != y.shape:
        raise ValueError(f"{p.size} probabilities for {y.size} labels")
    if by == "confidence":
        predicted_fake = p >= 0.5
        value = np.where(predicted_fake, p, 1.0 - p)
        hit = (predicted_fake == (y == 1)).astype(np.float64)
    else:
        value, hit = p, y
    edges = np.linspace(0.0, 1.0, bins + 1)
    # Bins are [lower, upper), the last one [lower, 1]: as torchmetrics bins, so the figures agree with its.
    index = np.clip(np.searchsorted(edges, value, side="right") - 1, 0, bins - 1)
    count = np.bincount(index, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        predicted = np.bincount(index, weights=value, minlength=bins) / count
        observed = np.bincount(index, weights=hit, minlength=bins) / count
    return {"edges": edges, "count": count, "predicted": predicted, "observed": observed}


def ece(p_fake, labels, bins: int = ECE_BINS, by: str = "confidence") -> float:
    """Expected calibration error: the count-weighted mean over :func:`reliability_bins` of
    |observed - predicted|; by default over the confidence of the predicted class, in 15 bins. 0 for
    probabilities that mean what they say; a model that says 97% and is right 60% of the time scores 0.37."""
    table = reliability_bins(p_fake, labels, bins, by)
    used = table["count"] > 0
    if not used.any():
        raise ValueError("no images to compute a calibration error on")
    gap = np.abs(table["observed"][used] - table["predicted"][used])
    return float(np.dot(table["count"][used], gap) / table["count"].sum())


def binary_nll(logits, labels, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood (binary cross-entropy, nats) of ``labels`` under p = sigmoid(logit / T)."""
    z = np.asarray(logits, np.float64).reshape(-1) / float(temperature)
    y = np.asarray(labels, np.float64).reshape(-1)
    return float(np.mean(np.logaddexp(0.0, z) - y * z))


def fit_temperature(logits, labels, *, platt_targets: bool = True) -> float:
    """The temperature T > 0 that minimises the binary negative log-likelihood of sigmoid(logit / T) on
    ``labels`` (0 real, 1 fake): temperature scaling (Guo et al. 2017). One parameter, and p_fake stays a
    monotone function of the logit, so the ranking (AUROC, average precision) is unchanged.

    ``platt_targets``: fit against Platt's targets, (n_fake + 1) / (n_fake + 2) for fakes and 1 / (n_real + 2)
    for reals, instead of 1 and 0. A validation split the model separates perfectly would otherwise have no
    minimum (T -> 0, every p_fake 0 or 1); with hundreds of images the targets are within 1% of 0 and 1 and the
    fit is the plain one. The minimum is found by golden-section search on log T over ``TEMPERATURE_RANGE``:
    the likelihood is convex in 1 / T, so this is exact to 1e-9 and deterministic.

    Raises ValueError when there are no logits, they and the labels differ in length, or one class is absent.
    """
    z = np.asarray(logits, np.float64).reshape(-1)
    y = np.asarray(labels).reshape(-1)
    if z.size == 0:
        raise ValueError("no logits to fit a temperature on")
    if z.shape != y.shape:
        raise ValueError(f"{z.size} logits for {y.size} labels")
    if not np.isfinite(z).all():
        raise ValueError("the logits include NaN or infinite values")
    if not both_classes(y):
        raise ValueError(f"a temperature needs real and fake images; these {y.size} are all {LABELS[int(y[0])]}")
    target = (y == 1).astype(np.float64)
    if platt_targets:
        n_fake, n_real = int(target.sum()), int(y.size - target.sum())
        target = np.where(target == 1, (n_fake + 1) / (n_fake + 2), 1 / (n_real + 2))
    if not np.any(z):
        return 1.0  # every logit 0: every temperature gives p = 0.5

    def nll(log_t: float) -> float:
        scaled = z / math.exp(log_t)
        return float(np.mean(np.logaddexp(0.0, scaled) - target * scaled))

    low, high = (math.log(t) for t in TEMPERATURE_RANGE)
    ratio = (math.sqrt(5) - 1) / 2
    a, b = high - ratio * (high - low), low + ratio * (high - low)
    fa, fb = nll(a), nll(b)
    while high - low > 1e-9:
        if fa <= fb:
            high, b, fb = b, a, fa
            a = high - ratio * (high - low)
            fa = nll(a)
        else:
            low, a, fa = a, b, fb
            b = low + ratio * (high - low)
            fb = nll(b)
    return float(math.exp((low + high) / 2))


def rates_at(p_fake, labels, threshold: float) -> tuple[float | None, float | None]:
    """(false positive rate, true positive rate) at ``threshold``: the share of reals, and of fakes, with
    p_fake >= threshold; None for a class that is absent."""
    p, y = np.asarray(p_fake, np.float64).reshape(-1), np.asarray(labels).reshape(-1)
    called = p >= threshold
    fpr = float(called[y == 0].mean()) if (y == 0).any() else None
    tpr = float(called[y == 1].mean()) if (y == 1).any() else None
    return fpr, tpr


def threshold_at_fpr(p_fake, labels, rate: float) -> float:
    """The lowest threshold at which at most ``rate`` of the reals score p_fake >= threshold (are called fake).

    That is any threshold just above the highest real score that must still read real. Every threshold from there
    up to the next score above it gives the same counts on these images, so the one returned is the shortest
    decimal in that gap (0.71 rather than 0.7100000381): the same decisions, and a figure a person can read.
    It is checked in float32 as well, the precision models output and torchmetrics compares in.

    Raises ValueError when there are no reals, or when no threshold below 1 keeps the rate (reals at p_fake 1).
    """
    if not 0.0 < rate < 1.0:
        raise ValueError(f"false positive rate {rate} must be strictly between 0 and 1")
    p, y = np.asarray(p_fake, np.float64).reshape(-1), np.asarray(labels).reshape(-1)
    reals = np.sort(p[y == 0])[::-1]
    if reals.size == 0:
        raise ValueError("no real images to measure a false positive rate on")
    allowed = int(math.floor(rate * reals.size + 1e-9))  # reals that may be called fake
    highest_real = reals[allowed]
    above = p[p > highest_real]
    upper = float(above.min()) if above.size else 1.0

    def keeps(t: float) -> bool:
        return highest_real < t <= upper and t < 1.0 and float(np.float32(t)) > highest_real

    for digits in range(1, 10):
        scale = 10**digits
        t = math.floor(highest_real * scale + 1) / scale
        if keeps(t):
            return t
    t = float(np.nextafter(np.float32(highest_real), np.float32(np.inf)))
    if keeps(t):
        return t
    n_top = int((reals >= highest_real).sum())
    raise ValueError(
        f"no threshold below 1 calls at most {rate:g} of the reals fake: {n_top} of {reals.size} real images "
        f"score p_fake {highest_real:.6g}"
    )


def threshold_at_fnr(p_fake, labels, rate: float) -> float:
    """The highest threshold below which at most ``rate`` of the fakes score (p_fake < threshold: "likely real").

    The mirror of :func:`threshold_at_fpr`: any threshold from just above the next lower score up to the lowest
    fake score that must stay at or above it gives the same counts, and the one returned is the shortest decimal
    there (rounded down), checked in float32 too. Raises ValueError when there are no fakes.
    """
    if not 0.0 < rate < 1.0:
        raise ValueError(f"false negative rate {rate} must be strictly between 0 and 1")
    p, y = np.asarray(p_fake, np.float64).reshape(-1), np.asarray(labels).reshape(-1)
    fakes = np.sort(p[y == 1])
    if fakes.size == 0:
        raise ValueError("no fake images to measure a false negative rate on")
    allowed = int(math.floor(rate * fakes.size + 1e-9))  # fakes that may fall below the threshold
    lowest_kept = fakes[allowed]
    below = p[p < lowest_kept]
    lower = float(below.max()) if below.size else 0.0

    def keeps(t: float) -> bool:
        return lower < t <= lowest_kept and t > 0.0 and float(np.float32(t)) <= lowest_kept

    for digits in range(1, 10):
        scale = 10**digits
        t = math.floor(lowest_kept * scale) / scale
        if keeps(t):
            return t
    return float(lowest_kept)
