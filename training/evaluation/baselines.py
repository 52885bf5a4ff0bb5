"""Baselines trained and tested on the same windows and split as the language model.

* :func:`de_logistic_regression` — differential entropy in the five SEED bands per channel
  (`e2llm.processing.features.differential_entropy`), standardised, then scikit-learn's
  multinomial logistic regression: the classic SEED-family baseline.
* :func:`eegnet_baseline` — EEGNet-v4 (:class:`EEGNetV4`), a compact convolutional network for
  EEG. braindecode would be its natural source, but braindecode 1.8 imports torchaudio, whose
  compiled library does not load with the pinned torch 2.13, so braindecode cannot be imported
  here; the network is implemented from its paper instead:

      V. J. Lawhern, A. J. Solon, N. R. Waytowich, S. M. Gordon, C. P. Hung, B. J. Lance.
      "EEGNet: a compact convolutional neural network for EEG-based brain-computer interfaces."
      Journal of Neural Engineering 15(5):056013, 2018. doi:10.1088/1741-2552/aace8c

Both take the windows as arrays or prepared datasets (``eeg`` `(n, n_channels, n_times)` in µV and
``emotion`` label indices) and return a :class:`BaselineResult` with predictions and probabilities
for the test windows; scoring is left to `e2llm.training.evaluation.metrics` so every method is scored alike.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn


@dataclass
class BaselineResult:
    """Test-set output of a baseline: `y_pred` `(n_test,)` label indices, `probs` `(n_test, n_labels)`."""

    name: str
    y_pred: np.ndarray
    probs: np.ndarray
    info: dict = field(default_factory=dict)


class _Windows:
    """Windows from a prepared `datasets.Dataset` (read in chunks, never all at once), a mapping with ``eeg`` and
    ``emotion``, or an `(eeg, labels)` tuple. `labels` `(n,)` int64; `get(rows)` `(len(rows), n_channels, n_times)`."""

    def __init__(self, data, label_column: str = "emotion"):
        if isinstance(data, tuple) and len(data) == 2:
            self.array, labels = np.asarray(data[0], dtype=np.float32), data[1]
        elif isinstance(data, Mapping):
            self.array, labels = np.asarray(data["eeg"], dtype=np.float32), data[label_column]
        elif hasattr(data, "with_format") and hasattr(data, "column_names"):
            missing = [c for c in ("eeg", label_column) if c not in data.column_names]
            if missing:
                raise ValueError(f"dataset has no column(s) {missing}")
            self.array, self.table = None, data.with_format("numpy")
            labels = self.table.select_columns([label_column])[:][label_column]
        else:
            raise ValueError(f"pass a datasets.Dataset, a dict with 'eeg' and {label_column!r}, or (eeg, labels); "
                             f"got {type(data).__name__}")
        self.labels = np.asarray(labels)
        if not np.issubdtype(self.labels.dtype, np.integer):
            raise ValueError(f"labels must be class indices, got dtype {self.labels.dtype}")
        self.labels = self.labels.astype(np.int64)
        self.shape = (len(self.labels), *self.get(np.arange(min(1, len(self.labels)))).shape[1:])
        if len(self.shape) != 3 or len(self.labels) == 0 or (self.array is not None and len(self.array) != len(self.labels)):
            raise ValueError(f"expected eeg (n, n_channels, n_times) and n >= 1 labels, got {self.shape}")

    def get(self, rows) -> np.ndarray:
        rows = np.asarray(rows, dtype=np.int64)
        if self.array is not None:
            return self.array[rows]
        return np.asarray(self.table[rows.tolist()]["eeg"], dtype=np.float32).reshape(len(rows), *self._trailing())

    def _trailing(self):
        feature = self.table.features["eeg"]
        return tuple(feature.shape)

    def chunks(self, size: int = 256):
        for start in range(0, len(self.labels), size):
            yield self.get(np.arange(start, min(start + size, len(self.labels))))


def _check_classes(train_labels: np.ndarray, n_labels: int) -> None:
    if train_labels.min() < 0 or train_labels.max() >= n_labels:
        raise ValueError(f"labels must lie in 0..{n_labels - 1}")
    if len(np.unique(train_labels)) < 2:
        raise ValueError("the training windows hold a single class; a classifier cannot be trained")


def de_features(eeg: np.ndarray, sfreq: float) -> np.ndarray:
    """Differential entropy per band and channel, flattened: `(n, n_channels, n_times)` -> `(n, 5 * n_channels)`."""
    from e2llm.processing.features import differential_entropy

    de = differential_entropy(eeg, sfreq)  # (n, n_bands, n_channels)
    return de.reshape(len(de), -1)


def de_logistic_regression(train, test, sfreq: float, n_labels: int, seed: int = 0, C: float = 1.0,
                           max_iter: int = 2000) -> BaselineResult:
    """DE features + standardisation + multinomial logistic regression (scikit-learn), fit on `train`."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    start = time.perf_counter()
    train, test = _Windows(train), _Windows(test)
    _check_classes(train.labels, n_labels)
    x_train = np.concatenate([de_features(chunk, sfreq) for chunk in train.chunks()])
    x_test = np.concatenate([de_features(chunk, sfreq) for chunk in test.chunks()])
    classifier = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=max_iter, random_state=seed))
    classifier.fit(x_train, train.labels)
    probs = np.zeros((len(x_test), n_labels))
    probs[:, classifier.classes_] = classifier.predict_proba(x_test)
    return BaselineResult(
        "de_logreg", probs.argmax(1), probs, {"seconds": time.perf_counter() - start, "C": C, "seed": seed}
    )


def _same_pad(kernel_length: int) -> nn.ZeroPad2d:
    """Keras' 'same' padding along time (the extra sample of an even kernel goes on the right)."""
    return nn.ZeroPad2d(((kernel_length - 1) // 2, kernel_length // 2, 0, 0))


def _fft_cross_correlation(x: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
    """`y[..., f, c, t] = sum_k kernels[f, k] * x[..., c, t + k]` (a 'valid' Conv2d with a `(1, K)` kernel).

    `x` `(batch, n_channels, L)`, `kernels` `(n_filters, K)` -> `(batch, n_filters, n_channels, L - K + 1)`. Computed
    through the FFT: the same numbers as `nn.Conv2d`, with a backward pass about ten times faster on CPU for the
    long kernels EEGNet uses.
    """
    length, k = x.shape[-1], kernels.shape[-1]
    n = 1 << (length - 1).bit_length()
    spectrum = torch.fft.rfft(x, n=n)[:, None] * torch.fft.rfft(kernels, n=n).conj()[None, :, None]
    return torch.fft.irfft(spectrum, n=n)[..., : length - k + 1]


class EEGNetV4(nn.Module):
    """EEGNet-v4 (Lawhern et al. 2018, Table 2): temporal conv -> depthwise spatial conv -> separable conv -> dense.

    Input `(batch, n_channels, n_times)`; output logits `(batch, n_classes)`. `kernel_length` is half the
    sampling rate in the paper (64 at 128 Hz); `F1`=8, `D`=2, `F2`=`F1 * D`, dropout 0.5 (within-subject) or
    0.25 (cross-subject). The depthwise spatial kernel has a max-norm of 1 and the dense layer 0.25 (call
    :meth:`apply_max_norm` after each optimiser step, as Keras' constraints do). The temporal and the depthwise
    spatial convolutions hold their weights in `nn.Conv2d` modules of the paper's shapes but are computed as an
    FFT cross-correlation and an `einsum` (identical results, much faster gradients on CPU).
    """

    def __init__(self, n_channels: int, n_times: int, n_classes: int, kernel_length: int = 64, F1: int = 8,
                 D: int = 2, F2: int | None = None, dropout: float = 0.5):
        super().__init__()
        F2 = F1 * D if F2 is None else F2
        if n_times < 32:
            raise ValueError(f"EEGNet pools time by 32; windows of {n_times} samples are too short")
        self.F1, self.D, self.kernel_length = F1, D, kernel_length
        self.temporal = nn.Conv2d(1, F1, (1, kernel_length), bias=False)
        self.temporal_norm = nn.BatchNorm2d(F1, momentum=0.01, eps=1e-3)
        self.spatial = nn.Conv2d(F1, F1 * D, (n_channels, 1), groups=F1, bias=False)
        self.block1 = nn.Sequential(
            nn.BatchNorm2d(F1 * D, momentum=0.01, eps=1e-3), nn.ELU(), nn.AvgPool2d((1, 4)), nn.Dropout(dropout)
        )
        self.block2 = nn.Sequential(
            _same_pad(16),
            nn.Conv2d(F1 * D, F1 * D, (1, 16), groups=F1 * D, bias=False),  # separable: depthwise
            nn.Conv2d(F1 * D, F2, 1, bias=False),  # ... then pointwise
            nn.BatchNorm2d(F2, momentum=0.01, eps=1e-3),
            nn.ELU(),
            nn.AvgPool2d((1, 8)),
            nn.Dropout(dropout),
        )
        self.classifier = nn.Linear(F2 * (n_times // 4 // 8), n_classes)

    def forward(self, eeg: torch.Tensor) -> torch.Tensor:
        k = self.kernel_length
        padded = nn.functional.pad(eeg, ((k - 1) // 2, k // 2))  # Keras 'same'
        x = self.temporal_norm(_fft_cross_correlation(padded, self.temporal.weight.view(self.F1, k)))
        # depthwise spatial filter: each temporal filter f gets D spatial filters over the channels
        weight = self.spatial.weight.view(self.F1, self.D, -1)  # (F1, D, n_channels)
        x = torch.einsum("bfct,fdc->bfdt", x, weight).flatten(1, 2).unsqueeze(2)  # (batch, F1 * D, 1, n_times)
        x = self.block1(x)  # (batch, F1 * D, 1, n_times // 4)
        x = self.block2(x)  # (batch, F2, 1, n_times // 32)
        return self.classifier(x.flatten(1))

    @torch.no_grad()
    def apply_max_norm(self) -> None:
        for weight, limit in ((self.spatial.weight, 1.0), (self.classifier.weight, 0.25)):
            flat = weight.view(weight.shape[0], -1)
            norms = flat.norm(dim=1, keepdim=True).clamp(min=1e-8)
            flat.mul_(norms.clamp(max=limit) / norms)


def eegnet_baseline(train, test, sfreq: float, n_labels: int, seed: int = 0, epochs: int = 30,
                    batch_size: int = 64, lr: float = 1e-3, dropout: float = 0.5,
                    device: str | torch.device = "cpu") -> BaselineResult:
    """Train :class:`EEGNetV4` on `train` windows (Adam, cross-entropy, class-balanced weights) and predict `test`.

    Channels are standardised with the training windows' per-channel mean and std. The paper trains
    for 500 epochs with early stopping on a validation split; here a fixed number of `epochs` is run
    (no test data is looked at during training), which suits the small SEED-style splits.
    """
    start = time.perf_counter()
    train, test = _Windows(train), _Windows(test)
    _check_classes(train.labels, n_labels)
    if test.shape[1:] != train.shape[1:]:
        raise ValueError(f"train windows {train.shape[1:]} and test windows {test.shape[1:]} differ in shape")
    # per-channel mean and std of the training windows, accumulated chunk by chunk
    total, total_sq = np.zeros(train.shape[1]), np.zeros(train.shape[1])
    for chunk in train.chunks():
        total += chunk.sum(axis=(0, 2), dtype=np.float64)
        total_sq += np.square(chunk, dtype=np.float64).sum(axis=(0, 2))
    count = len(train.labels) * train.shape[2]
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean**2, 0)) + 1e-6
    mean, std = (torch.as_tensor(v[None, :, None], dtype=torch.float32, device=device) for v in (mean, std))

    def inputs(windows: np.ndarray) -> torch.Tensor:
        return (torch.from_numpy(windows).to(device) - mean) / std

    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    kernel_length = max(2, int(round(sfreq / 2)))
    model = EEGNetV4(train.shape[1], train.shape[2], n_labels, kernel_length=kernel_length, dropout=dropout)
    model.to(device)
    counts = np.bincount(train.labels, minlength=n_labels).astype(np.float64)
    weights = np.where(counts > 0, len(train.labels) / (n_labels * np.maximum(counts, 1)), 0.0)
    loss_fn = nn.CrossEntropyLoss(weight=torch.as_tensor(weights, dtype=torch.float32, device=device))
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    targets = torch.from_numpy(train.labels)
    n_batches = math.ceil(len(targets) / batch_size)
    losses = []
    for _ in range(epochs):
        model.train()
        order = torch.randperm(len(targets), generator=generator)
        total_loss = 0.0
        for b in range(n_batches):
            idx = order[b * batch_size : (b + 1) * batch_size]
            if len(idx) < 2:  # batch norm needs two samples
                continue
            rows = np.sort(idx.numpy())  # sorted reads are faster on Arrow
            optimizer.zero_grad()
            loss = loss_fn(model(inputs(train.get(rows))), targets[rows].to(device))
            loss.backward()
            optimizer.step()
            model.apply_max_norm()
            total_loss += float(loss.detach())
        losses.append(total_loss / n_batches)
    model.eval()
    with torch.no_grad():
        probs = torch.cat([model(inputs(chunk)).softmax(-1).cpu() for chunk in test.chunks()]).double().numpy()
    info = {"seconds": time.perf_counter() - start, "epochs": epochs, "seed": seed, "final_train_loss": losses[-1]}
    return BaselineResult("eegnet_v4", probs.argmax(1), probs, info)


BASELINES = {"de_logreg": de_logistic_regression, "eegnet_v4": eegnet_baseline}


__all__ = ["BASELINES", "BaselineResult", "EEGNetV4", "de_features", "de_logistic_regression", "eegnet_baseline"]
