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
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from torch import nn

from e2llm.eeg_evidence_features import BANDS
from e2llm.processing.features import differential_entropy


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
    de = differential_entropy(eeg, sfreq)  # (n, n_bands, n_channels)
    return de.reshape(len(de), -1)


def de_logistic_regression(train, test, sfreq: float, n_labels: int, seed: int = 0, C: float = 1.0,
                           max_iter: int = 2000) -> BaselineResult:
    """DE features + standardisation + multinomial logistic regression (scikit-learn), fit on `train`."""
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


def _fft_filter(x: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
    """`_fft_cross_correlation` of each signal with its own kernel: `x` `(batch, n_filters, L)`, `kernels`
    `(n_filters, K)` -> `(batch, n_filters, L - K + 1)`."""
    length, k = x.shape[-1], kernels.shape[-1]
    n = 1 << (length - 1).bit_length()
    spectrum = torch.fft.rfft(x, n=n) * torch.fft.rfft(kernels, n=n).conj()
    return torch.fft.irfft(spectrum, n=n)[..., : length - k + 1]


def _correlation_moments(x: torch.Tensor, kernels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
    """`(sums, squares, count)`: per kernel f, the sum and the sum of squares (float64, differentiable in `kernels`)
    of the `count` values of `_fft_cross_correlation(x, kernels)[:, f]`, without computing them.

    The circular cross-correlation of length `n` (the FFT's) holds the valid outputs at `t < L - K + 1` and
    wrapped-around ones after them: its sum is `sum(x) * sum(kernel)`, its sum of squares `sum_w |X_w|^2 |H_w|^2 / n`
    (Parseval); those of the wrapped-around outputs (`n - L + K - 1` per signal), from the few input samples they
    read, are taken off."""
    length, k = x.shape[-1], kernels.shape[-1]
    n = 1 << (length - 1).bit_length()
    valid = length - k + 1
    signals = x.reshape(-1, length)
    spectrum = torch.fft.rfft(signals, n=n)
    power = (spectrum.real.double().square() + spectrum.imag.double().square()).sum(0)  # (n // 2 + 1,)
    bins = torch.full_like(power, 2.0)
    bins[0] = 1.0
    if n % 2 == 0:
        bins[-1] = 1.0
    filters = torch.fft.rfft(kernels.double(), n=n)
    circular_squares = (filters.real.square() + filters.imag.square()) @ (bins * power) / n
    circular_sums = kernels.double().sum(-1) * signals.double().sum()
    tail = n - valid
    wrapped = nn.functional.pad(signals, (0, n - length))
    wrapped = torch.cat([wrapped, wrapped[:, : k - 1]], -1)[:, valid:]  # output valid + t reads wrapped[:, t : t + K]
    # sums: kernel . (sum over signals and outputs of each tap's input); squares: kernel' A kernel with
    # A[i, j] = sum over signals and outputs t of wrapped[t + i] * wrapped[t + j], from the Gram matrix of positions
    column_sums = wrapped.double().sum(0).unfold(0, tail, 1).sum(-1)  # (K,)
    gram = (wrapped.T @ wrapped).double()
    taps = torch.diagonal(gram.unfold(0, k, 1).unfold(1, k, 1), dim1=0, dim2=1).sum(-1)  # (K, K)
    kernels64 = kernels.double()
    tail_squares = torch.einsum("fi,ij,fj->f", kernels64, taps, kernels64)
    return circular_sums - kernels64 @ column_sums, circular_squares - tail_squares, len(signals) * valid


class EEGNetV4(nn.Module):
    """EEGNet-v4 (Lawhern et al. 2018, Table 2): temporal conv -> depthwise spatial conv -> separable conv -> dense.

    Input `(batch, n_channels, n_times)`; output logits `(batch, n_classes)`. `kernel_length` is half the
    sampling rate in the paper (64 at 128 Hz); `F1`=8, `D`=2, `F2`=`F1 * D`, dropout 0.5 (within-subject) or
    0.25 (cross-subject). The depthwise spatial kernel has a max-norm of 1 and the dense layer 0.25 (call
    :meth:`apply_max_norm` after each optimiser step, as Keras' constraints do). The temporal and the depthwise
    spatial convolutions hold their weights in `nn.Conv2d` modules of the paper's shapes, and the batch norm between
    them its parameters and statistics, but they are computed spatial filter first (the batch norm being affine per
    temporal filter, with the statistics of the temporal outputs it would normalise: `_correlation_moments`), the
    temporal filters as FFT cross-correlations: the paper's results up to rounding, about ten times faster for 62
    channels.
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
        kernels = self.temporal.weight.view(self.F1, k)
        weight = self.spatial.weight.view(self.F1, self.D, -1)  # (F1, D, n_channels): D spatial filters per f
        # The batch norm after the temporal convolution is an affine map per temporal filter f (`scale_f`, `shift_f`)
        # and the depthwise spatial filter is linear, so spatial filter d of f applied to the normalised temporal
        # outputs is `scale_f * (temporal filter f of spatial filter d) + shift_f * sum(spatial filter d)`: the
        # filters run on `F1 * D` mixed signals instead of on `F1 * n_channels` (a 62-channel window: 31 times less
        # work), with the batch norm's statistics over the `(batch, channel, time)` outputs it would have seen.
        scale, shift = self._temporal_norm_affine(padded, kernels)
        mixed = torch.einsum("bcl,fdc->bfdl", padded, weight)  # (batch, F1, D, n_times + k - 1)
        x = _fft_filter(mixed.flatten(1, 2), kernels.repeat_interleave(self.D, 0))  # filter f * D + d: kernel f
        x = x.view(mixed.shape[0], self.F1, self.D, -1) * scale[:, None, None]
        x = x + (shift[:, None] * weight.sum(-1))[..., None]  # (batch, F1, D, n_times)
        x = self.block1(x.flatten(1, 2).unsqueeze(2))  # (batch, F1 * D, 1, n_times // 4)
        x = self.block2(x)  # (batch, F2, 1, n_times // 32)
        return self.classifier(x.flatten(1))

    def _temporal_norm_affine(self, padded: torch.Tensor, kernels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`(scale, shift)` `(F1,)`: the first batch norm as the affine map per temporal filter it applies to this
        batch (the identity without one)."""
        norm = self.temporal_norm
        if not isinstance(norm, nn.BatchNorm2d):
            return kernels.new_ones(self.F1), kernels.new_zeros(self.F1)
        mean, var = self._temporal_statistics(padded, kernels)
        scale = norm.weight / torch.sqrt(var + norm.eps)
        return scale, norm.bias - scale * mean

    def _temporal_statistics(self, padded: torch.Tensor, kernels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`(mean, var)` `(F1,)` the first batch norm normalises the temporal outputs with: in training, the biased
        mean and variance over `(batch, channel, time)` of `_fft_cross_correlation(padded, kernels)` (updating its
        running statistics as `nn.BatchNorm2d` does), computed without those outputs; otherwise its running ones."""
        norm = self.temporal_norm
        if not norm.training and norm.track_running_stats:
            return norm.running_mean, norm.running_var
        sums, squares, count = _correlation_moments(padded, kernels)
        mean = sums / count
        var = (squares / count - mean.square()).clamp_min(0.0)
        mean, var = mean.to(padded.dtype), var.to(padded.dtype)
        if norm.track_running_stats:
            with torch.no_grad():
                norm.num_batches_tracked.add_(1)
                factor = 1.0 / float(norm.num_batches_tracked) if norm.momentum is None else norm.momentum
                norm.running_mean.mul_(1 - factor).add_(factor * mean)
                norm.running_var.mul_(1 - factor).add_(factor * var * count / max(count - 1, 1))
        return mean, var

    @torch.no_grad()
    def apply_max_norm(self) -> None:
        for weight, limit in ((self.spatial.weight, 1.0), (self.classifier.weight, 0.25)):
            flat = weight.view(weight.shape[0], -1)
            norms = flat.norm(dim=1, keepdim=True).clamp(min=1e-8)
            flat.mul_(norms.clamp(max=limit) / norms)


class EEGNetV4SpatialFirst(EEGNetV4):
    """EEGNet-v4 without its first batch norm (after the temporal convolution), computed spatial filter first.

    Without that batch norm the temporal and the depthwise spatial convolutions are two linear maps that commute, so
    each of the `F1 * D` spatial filters runs on the channels first and its temporal filter on the one resulting
    signal: `(batch, F1 * D, n_times)` intermediates instead of `(batch, F1, n_channels, n_times)`, about
    `n_channels / D` times less work (31 times for 62 channels), the rest of the network unchanged (the batch norm
    after the spatial filter still normalises each of its outputs). On the quickstart's validation trials it reached
    the paper architecture's accuracy at a thirtieth of the cost (see `eegnet_baseline`).
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.temporal_norm = nn.Identity()

    def forward(self, eeg: torch.Tensor) -> torch.Tensor:
        k = self.kernel_length
        weight = self.spatial.weight.view(self.F1 * self.D, -1)  # (F1 * D, n_channels), filter f * D + d
        mixed = nn.functional.pad(torch.einsum("bct,gc->bgt", eeg, weight), ((k - 1) // 2, k // 2))  # Keras 'same'
        temporal = self.temporal.weight.view(self.F1, k).repeat_interleave(self.D, 0)  # filter f for f * D + d
        length = mixed.shape[-1]
        n = 1 << (length - 1).bit_length()  # cross-correlation through the FFT, as in `_fft_cross_correlation`
        spectrum = torch.fft.rfft(mixed, n=n) * torch.fft.rfft(temporal, n=n).conj()
        x = torch.fft.irfft(spectrum, n=n)[..., : length - k + 1].unsqueeze(2)  # (batch, F1 * D, 1, n_times)
        x = self.block1(x)
        x = self.block2(x)
        return self.classifier(x.flatten(1))


class ShallowConvNet(nn.Module):
    """Shallow ConvNet (Schirrmeister et al. 2017, "ShallowFBCSPNet"), the FBCSP-like network built to read band power:
    temporal convolution (`n_filters`) -> spatial convolution over all channels (`n_filters`) -> batch norm ->
    square -> mean pooling -> log -> dropout -> dense.

        R. T. Schirrmeister, J. T. Springenberg, L. D. J. Fiederer, M. Glasstetter, K. Eggensperger, M. Tangermann,
        F. Hutter, W. Burgard, T. Ball. "Deep learning with convolutional neural networks for EEG decoding and
        visualization." Human Brain Mapping 38(11):5391-5420, 2017. doi:10.1002/hbm.23730

    Filter length, pool and stride are the paper's (25, 75 and 15 samples at 250 Hz) in seconds, at `sfreq`;
    `filter_seconds` sets another temporal filter length (0.1 s resolves bands about 10 Hz wide). Input
    `(batch, n_channels, n_times)`, output logits `(batch, n_classes)`. The two first convolutions are linear with
    nothing between them, so they run as one spatio-temporal filter per output in the frequency domain
    (`G_kc(f) = sum_j W_kjc conj(H_j(f))`): the same numbers as the two `nn.Conv2d` of the paper, whose weights they
    hold, without the `(batch, n_filters, n_channels, n_times)` intermediate.
    """

    def __init__(self, n_channels: int, n_times: int, n_classes: int, sfreq: float, n_filters: int = 40,
                 dropout: float = 0.5, filter_seconds: float = 0.1):
        super().__init__()
        self.kernel = max(2, int(round(filter_seconds * sfreq)))
        pool, stride = max(1, int(round(0.3 * sfreq))), max(1, int(round(0.06 * sfreq)))
        n_out = (n_times - self.kernel + 1 - pool) // stride + 1
        if n_out < 1:
            raise ValueError(f"windows of {n_times} samples are too short for the Shallow ConvNet at {sfreq} Hz")
        self.temporal = nn.Conv2d(1, n_filters, (1, self.kernel))
        self.spatial = nn.Conv2d(n_filters, n_filters, (n_channels, 1), bias=False)
        self.norm = nn.BatchNorm2d(n_filters, momentum=0.1, eps=1e-5)
        self.pool = nn.AvgPool2d((1, pool), stride=(1, stride))
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(n_filters * n_out, n_classes)

    def forward(self, eeg: torch.Tensor) -> torch.Tensor:
        length = eeg.shape[-1]
        n = 1 << (length - 1).bit_length()
        weight = self.spatial.weight[:, :, :, 0]  # (out k, temporal filter j, channel c)
        filters = torch.fft.rfft(self.temporal.weight.view(-1, self.kernel), n=n).conj()  # (j, freq)
        composite = torch.einsum("kjc,jw->kcw", weight.to(filters.dtype), filters)
        spectrum = torch.einsum("bcw,kcw->bkw", torch.fft.rfft(eeg, n=n), composite)
        x = torch.fft.irfft(spectrum, n=n)[..., : length - self.kernel + 1]
        x = x + torch.einsum("kjc,j->k", weight, self.temporal.bias)[None, :, None]  # the temporal biases
        x = self.norm(x.unsqueeze(2)).square()
        x = torch.log(self.pool(x).clamp_min(1e-6))
        return self.classifier(self.dropout(x).flatten(1))


class FBCNet(nn.Module):
    """FBCNet (Mane et al. 2021), a CNN built to read band power from few trials: a filter bank -> per band,
    `n_filters` spatial filters over the channels (depthwise) -> batch norm -> swish -> log-variance over
    `n_segments` parts of the window -> dense (max-norm 0.5).

        R. Mane, E. Chew, K. Chua, K. K. Ang, N. Robinson, A. P. Vinod, S.-W. Lee, C. Guan. "FBCNet: A Multi-view
        Convolutional Neural Network for Brain-Computer Interface." arXiv:2104.01233, 2021.

    The filter bank is the SEED family's five bands (`e2llm.eeg_evidence_features.BANDS`, ideal band-pass filters
    applied in the frequency domain) rather than the paper's nine 4-Hz bands from 4 to 40 Hz, which leave out delta
    and gamma, where emotion EEG differs. Input `(batch, n_channels, n_times)` at `sfreq`, output logits.
    """

    def __init__(self, n_channels: int, n_times: int, n_classes: int, sfreq: float, n_filters: int = 8,
                 n_segments: int = 4):
        super().__init__()
        if n_times < 2 * n_segments:
            raise ValueError(f"windows of {n_times} samples are too short for {n_segments} variance segments")
        freqs = np.fft.rfftfreq(n_times, 1.0 / sfreq)
        masks = np.stack([(freqs >= lo) & (freqs < hi) for lo, hi in BANDS.values()]).astype(np.float32)
        self.register_buffer("band_masks", torch.from_numpy(masks), persistent=False)  # (n_bands, n_freqs)
        self.n_bands, self.n_filters, self.n_segments = len(BANDS), n_filters, n_segments
        self.spatial = nn.Conv2d(self.n_bands, self.n_bands * n_filters, (n_channels, 1), groups=self.n_bands)
        self.norm = nn.BatchNorm2d(self.n_bands * n_filters)
        self.classifier = nn.Linear(self.n_bands * n_filters * n_segments, n_classes)

    def forward(self, eeg: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():  # the fixed filter bank: (batch, n_bands, n_channels, n_times)
            bands = torch.fft.irfft(torch.fft.rfft(eeg)[:, None] * self.band_masks[None, :, None], n=eeg.shape[-1])
        weight = self.spatial.weight.view(self.n_bands, self.n_filters, -1)  # (band, filter, channel)
        x = torch.einsum("bkct,kmc->bkmt", bands, weight).flatten(1, 2) + self.spatial.bias[None, :, None]
        x = nn.functional.silu(self.norm(x.unsqueeze(2))).squeeze(2)  # swish
        length = x.shape[-1] // self.n_segments * self.n_segments
        x = x[..., :length].reshape(*x.shape[:2], self.n_segments, -1).var(-1, unbiased=True)
        return self.classifier(torch.log(x.clamp(1e-6, 1e6)).flatten(1))

    @torch.no_grad()
    def apply_max_norm(self) -> None:
        """The dense layer's max-norm of 0.5 (as the paper's)."""
        flat = self.classifier.weight
        norms = flat.norm(dim=1, keepdim=True).clamp(min=1e-8)
        flat.mul_(norms.clamp(max=0.5) / norms)


def _standardiser(train: _Windows, device) -> Callable[[np.ndarray], torch.Tensor]:
    """Windows -> tensors standardised with the training windows' per-channel mean and std (read chunk by chunk)."""
    total, total_sq = np.zeros(train.shape[1]), np.zeros(train.shape[1])
    for chunk in train.chunks():
        total += chunk.sum(axis=(0, 2), dtype=np.float64)
        total_sq += np.square(chunk, dtype=np.float64).sum(axis=(0, 2))
    count = len(train.labels) * train.shape[2]
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean**2, 0)) + 1e-6
    mean, std = (torch.as_tensor(v[None, :, None], dtype=torch.float32, device=device) for v in (mean, std))
    return lambda windows: (torch.from_numpy(np.ascontiguousarray(windows)).to(device) - mean) / std


@torch.no_grad()
def precise_batch_norm(model: nn.Module, windows, inputs: Callable, batch_size: int = 64) -> None:
    """Recompute every batch norm's running statistics as the mean over `windows` (a `_Windows`), dropout off.

    The paper's batch-norm momentum (Keras 0.99, here 0.01) leaves the running statistics near their initial values
    after the few hundred steps a small training set gives, so the evaluation-mode network would normalise with
    the wrong statistics; one pass over the training windows sets them exactly (Wu & Johnson 2021, "precise BN")."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    model.eval()
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # a cumulative average over the batches
        norm.train()
    for chunk in windows.chunks(batch_size):
        if len(chunk) > 1:
            model(inputs(chunk))
    for norm, momentum in zip(norms, momenta):
        norm.momentum = momentum
    model.eval()


def _train_epochs(model, train: _Windows, inputs, loss_fn, optimizer, epochs: int, batch_size: int,
                  generator: torch.Generator, device) -> list[float]:
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
            if hasattr(model, "apply_max_norm"):
                model.apply_max_norm()
            total_loss += float(loss.detach())
        losses.append(total_loss / n_batches)
    return losses


def _fit_predict(name: str, model: nn.Module, train: _Windows, test: _Windows, n_labels: int, seed: int,
                 epochs: int, batch_size: int, lr: float, device, started: float) -> BaselineResult:
    """Train `model` on `train` (Adam, class-balanced cross-entropy, standardised channels), set its batch norms'
    statistics on the training windows (`precise_batch_norm`) and predict `test`."""
    inputs = _standardiser(train, device)
    generator = torch.Generator().manual_seed(seed)
    model.to(device)
    counts = np.bincount(train.labels, minlength=n_labels).astype(np.float64)
    weights = np.where(counts > 0, len(train.labels) / (n_labels * np.maximum(counts, 1)), 0.0)
    loss_fn = nn.CrossEntropyLoss(weight=torch.as_tensor(weights, dtype=torch.float32, device=device))
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    losses = _train_epochs(model, train, inputs, loss_fn, optimizer, epochs, batch_size, generator, device)
    precise_batch_norm(model, train, inputs, batch_size)
    with torch.no_grad():
        probs = torch.cat([model(inputs(chunk)).softmax(-1).cpu() for chunk in test.chunks()]).double().numpy()
    info = {"seconds": time.perf_counter() - started, "epochs": epochs, "seed": seed, "lr": lr,
            "final_train_loss": losses[-1] if losses else float("nan"), "architecture": type(model).__name__}
    return BaselineResult(name, probs.argmax(1), probs, info)


def _windows_pair(train, test, n_labels: int) -> tuple[_Windows, _Windows]:
    train, test = _Windows(train), _Windows(test)
    _check_classes(train.labels, n_labels)
    if test.shape[1:] != train.shape[1:]:
        raise ValueError(f"train windows {train.shape[1:]} and test windows {test.shape[1:]} differ in shape")
    return train, test


def eegnet_baseline(train, test, sfreq: float, n_labels: int, seed: int = 0, epochs: int = 30,
                    batch_size: int = 64, lr: float = 1e-3, dropout: float = 0.5,
                    device: str | torch.device = "cpu", architecture: type[EEGNetV4] = EEGNetV4) -> BaselineResult:
    """Train `architecture` (:class:`EEGNetV4`, or :class:`EEGNetV4SpatialFirst`) on `train` windows and predict
    `test` (`_fit_predict`). The paper trains for 500 epochs with early stopping on a validation split; here a fixed
    number of `epochs` is run (no test data is looked at during training)."""
    started = time.perf_counter()
    train, test = _windows_pair(train, test, n_labels)
    torch.manual_seed(seed)
    model = architecture(train.shape[1], train.shape[2], n_labels, kernel_length=max(2, int(round(sfreq / 2))),
                         dropout=dropout)
    return _fit_predict("eegnet_v4", model, train, test, n_labels, seed, epochs, batch_size, lr, device, started)


def fbcnet_baseline(train, test, sfreq: float, n_labels: int, seed: int = 0, epochs: int = 20, batch_size: int = 64,
                    lr: float = 1e-2, device: str | torch.device = "cpu") -> BaselineResult:
    """Train :class:`FBCNet` on `train` windows and predict `test` (`_fit_predict`). The paper's Adam at 1e-3 for up
    to 1,500 epochs does not fit a quickstart; at 1e-2 for 20 epochs its balanced accuracy on the quickstart's
    validation trials was about 0.4 (chance 0.14; EEGNet-v4 at chance after 40 epochs), in about 30 s on 2 cores."""
    started = time.perf_counter()
    train, test = _windows_pair(train, test, n_labels)
    torch.manual_seed(seed)
    model = FBCNet(train.shape[1], train.shape[2], n_labels, sfreq)
    return _fit_predict("fbcnet", model, train, test, n_labels, seed, epochs, batch_size, lr, device, started)


def shallow_convnet_baseline(train, test, sfreq: float, n_labels: int, seed: int = 0, epochs: int = 30,
                             batch_size: int = 64, lr: float = 1e-3, dropout: float = 0.5,
                             device: str | torch.device = "cpu") -> BaselineResult:
    """Train :class:`ShallowConvNet` on `train` windows and predict `test` (`_fit_predict`)."""
    started = time.perf_counter()
    train, test = _windows_pair(train, test, n_labels)
    torch.manual_seed(seed)
    model = ShallowConvNet(train.shape[1], train.shape[2], n_labels, sfreq, dropout=dropout)
    return _fit_predict("shallow_convnet", model, train, test, n_labels, seed, epochs, batch_size, lr, device,
                        started)


BASELINES = {"de_logreg": de_logistic_regression, "eegnet_v4": eegnet_baseline, "fbcnet": fbcnet_baseline,
             "shallow_convnet": shallow_convnet_baseline}


__all__ = ["BASELINES", "BaselineResult", "EEGNetV4", "EEGNetV4SpatialFirst", "FBCNet", "ShallowConvNet", "de_features", "de_logistic_regression",
           "eegnet_baseline", "fbcnet_baseline", "precise_batch_norm", "shallow_convnet_baseline"]
