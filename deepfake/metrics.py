"""How a detector is scored, in one place: training's metrics.json, evaluate.py, export.py's fp16/int8
report, compare.py and the robustness table all compute their figures here, under the same names.

Fake (label 1) is the positive class. The names, in every file the project writes:

    acc, precision, recall, f1     at the decision threshold (p_fake >= threshold reads "fake")
    auroc, average_precision       from the ranking of p_fake alone
    eer, eer_threshold             where reals called fake and fakes passed as real are equally common

Two metrics had a second name in files written before; those files keep it beside the first
(``ALIASES``): ``accuracy`` for acc and ``roc_auc`` for auroc.

The numbers come from torchmetrics, streamed batch by batch during training (:func:`metric_collection`)
or over whole arrays (:func:`scores`, :func:`binary_metrics`): the same classes either way.
"""

from __future__ import annotations

import numpy as np
import torch
import torchmetrics
from torchmetrics import classification as C
from torchmetrics.functional import classification as F

from deepfake.preprocess import DEFAULT_THRESHOLD, LABELS

ALIASES = {"accuracy": "acc", "roc_auc": "auroc"}


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
    columns predicted) and a per-class report, with the aliases of ``ALIASES``. Ranking metrics are None
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
    }
    if both:
        metrics["eer"], metrics["eer_threshold"] = equal_error_rate(p_fake, labels)
    matrix = F.binary_confusion_matrix(p, y, threshold).tolist()
    metrics["confusion_matrix"] = {"labels": list(LABELS), "rows": "true", "columns": "predicted", "matrix": matrix}
    metrics["classification_report"] = classification_report((p >= threshold).long(), y)
    return with_aliases(metrics)


def with_aliases(metrics: dict) -> dict:
    """``metrics`` with the older name of each metric that has one (``accuracy``, ``roc_auc``) beside it."""
    return {**metrics, **{alias: metrics[name] for alias, name in ALIASES.items() if name in metrics}}


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
