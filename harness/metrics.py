"""Metrics shared by several models. Model-only metrics live in models/<name>/metrics.py."""
from __future__ import annotations

from collections import defaultdict
from typing import Mapping

import numpy as np

from harness.spec import Sample


def softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    shifted = logits - logits.max(axis=axis, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=axis, keepdims=True)


def topk_hits(scores: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """Boolean per row: is the label among the k highest scores? scores [N, C], labels [N]."""
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return (top == np.asarray(labels)[:, None]).any(axis=1)


class VideoClassificationScorer:
    """Top-1/top-5 over videos; a video's score is the mean of its clips' class probabilities.

    ``sample.target`` is ``(video_id, label)``; several samples (clips) may share a video.
    ``logits=True`` applies a softmax per clip first (the network outputs logits); otherwise the
    output is taken as probabilities already (e.g. an exported softmax head).
    """

    def __init__(self, output: str, logits: bool, ks: tuple[int, ...] = (1, 5)):
        self.output = output
        self.logits = logits
        self.ks = ks
        self._sum: dict[str, np.ndarray] = {}
        self._clips: dict[str, int] = defaultdict(int)
        self._label: dict[str, int] = {}

    def add(self, sample: Sample, outputs: Mapping[str, np.ndarray]) -> None:
        video, label = sample.target
        scores = np.asarray(outputs[self.output], dtype=np.float64).reshape(-1)
        probs = softmax(scores) if self.logits else scores
        self._sum[video] = self._sum.get(video, 0.0) + probs
        self._clips[video] += 1
        self._label[video] = int(label)

    def result(self) -> dict[str, float]:
        if not self._sum:
            return {f"top{k}": float("nan") for k in self.ks}
        videos = sorted(self._sum)
        scores = np.stack([self._sum[v] / self._clips[v] for v in videos])
        labels = np.array([self._label[v] for v in videos])
        return {f"top{k}": 100.0 * float(topk_hits(scores, labels, k).mean()) for k in self.ks}
