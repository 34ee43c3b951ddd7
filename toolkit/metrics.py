"""Metrics that several tasks share, on scikit-learn (a task's own metrics live in its package)."""

from __future__ import annotations

import numpy as np


def classification_metrics(labels: np.ndarray, predictions: np.ndarray, names: list[str]) -> dict:
    """Accuracy, macro-F1, per-class precision/recall/F1 and the confusion matrix (rows: true)."""
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

    ids = list(range(len(names)))
    precision, recall, f1, support = precision_recall_fscore_support(labels, predictions, labels=ids, zero_division=0)
    return {
        "accuracy": float(accuracy_score(labels, predictions)),
        "macro_f1": float(f1_score(labels, predictions, labels=ids, average="macro", zero_division=0)),
        "per_class": {
            name: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
            for name, p, r, f, s in zip(names, precision, recall, f1, support)
        },
        "confusion_matrix": confusion_matrix(labels, predictions, labels=ids).tolist(),
        "count": int(len(labels)),
    }


CALIBRATION_BINS = 10
WORST_ERRORS = 10
THRESHOLD_TARGETS = (0.8, 0.9, 0.95)


def error_report(labels: np.ndarray, probs: np.ndarray, names: list[str], inputs: list[str]) -> dict:
    """What a classifier gets wrong, from its probabilities: calibration (expected calibration error over the top
    label's confidence, and the reliability bins), the most confidently wrong rows with their inputs, and for two
    classes the thresholds on the second class's probability that reach each precision or recall target."""
    labels, probs = np.asarray(labels), np.asarray(probs, dtype=np.float64)
    predicted, confidence = probs.argmax(1), probs.max(1)
    wrong = np.flatnonzero(predicted != labels)
    worst = wrong[np.argsort(-confidence[wrong], kind="stable")][:WORST_ERRORS]
    report = {
        "calibration": calibration(confidence, predicted == labels),
        "worst_errors": [
            {
                "row": int(i),
                "input": str(inputs[i]),
                "label": names[labels[i]],
                "predicted": names[predicted[i]],
                "confidence": round(float(confidence[i]), 4),
            }
            for i in worst
        ],  # fmt: skip
    }
    if len(names) == 2:
        report["thresholds"] = thresholds(labels == 1, probs[:, 1], names[1])
    return report


def calibration(confidence: np.ndarray, correct: np.ndarray) -> dict:
    """Expected calibration error (equal-width confidence bins, weighted by their rows) and each bin's mean
    confidence and accuracy: what a reliability plot draws."""
    edges = np.linspace(0, 1, CALIBRATION_BINS + 1)
    bins, ece = [], 0.0
    for low, high in zip(edges[:-1], edges[1:]):
        inside = (confidence > low) & (confidence <= high)
        if not inside.any():
            continue
        mean_confidence, accuracy = float(confidence[inside].mean()), float(correct[inside].mean())
        ece += inside.mean() * abs(mean_confidence - accuracy)
        bins.append({"from": round(float(low), 2), "to": round(float(high), 2), "confidence": round(mean_confidence, 4),
                     "accuracy": round(accuracy, 4), "count": int(inside.sum())})  # fmt: skip
    return {"ece": float(ece), "bins": bins}


def thresholds(positive: np.ndarray, scores: np.ndarray, name: str) -> dict:
    """For ``name`` (the positive class): the lowest threshold on its probability that reaches each precision
    target, and the highest that keeps each recall target, with what the other measure is there."""
    from sklearn.metrics import precision_recall_curve

    precision, recall, cut = precision_recall_curve(positive, scores)
    precision, recall = precision[:-1], recall[:-1]  # the last point has no threshold
    out = {"class": name, "precision": {}, "recall": {}}
    for target in THRESHOLD_TARGETS:
        reach = np.flatnonzero(precision >= target)
        if reach.size:
            i = reach[0]
            out["precision"][str(target)] = {"threshold": round(float(cut[i]), 4), "recall": round(float(recall[i]), 4)}
        keep = np.flatnonzero(recall >= target)
        if keep.size:
            i = keep[-1]
            out["recall"][str(target)] = {"threshold": round(float(cut[i]), 4),
                                          "precision": round(float(precision[i]), 4)}  # fmt: skip
    return out


def reliability_plot(report: dict, path) -> None:
    """The reliability diagram of an error report's calibration bins, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bins = report["calibration"]["bins"]
    fig, ax = plt.subplots(figsize=(4.5, 4.5), dpi=100)
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfectly calibrated")
    ax.bar([(b["from"] + b["to"]) / 2 for b in bins], [b["accuracy"] for b in bins],
           width=1 / CALIBRATION_BINS, edgecolor="black", alpha=0.7, label="accuracy in bin")  # fmt: skip
    ax.plot([b["confidence"] for b in bins], [b["accuracy"] for b in bins], marker="o", color="black")
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence (top label)", ylabel="accuracy",
           title=f"Reliability, ECE {report['calibration']['ece']:.3f}")  # fmt: skip
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
