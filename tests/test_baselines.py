"""Baselines: DE + logistic regression, EEGNet-v4 (Lawhern et al. 2018), FBCNet and the Shallow ConvNet."""

import copy

import numpy as np
import pytest
import torch

from e2llm.training.evaluation.baselines import (
    EEGNetV4,
    EEGNetV4SpatialFirst,
    FBCNet,
    ShallowConvNet,
    _standardiser,
    _Windows,
    de_features,
    de_logistic_regression,
    eegnet_baseline,
    fbcnet_baseline,
    precise_batch_norm,
)


def _windows(n: int, seed: int, n_channels: int = 8, n_times: int = 400, sfreq: float = 200.0):
    """Three classes that differ in alpha (10 Hz) amplitude, as band-power classes do in real EEG."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 3
    t = np.arange(n_times) / sfreq
    phase = rng.uniform(0, 2 * np.pi, (n, n_channels, 1))
    eeg = 10 * rng.standard_normal((n, n_channels, n_times)) + (labels[:, None, None] + 1) * 6 * np.sin(
        2 * np.pi * 10 * t + phase
    )
    return eeg.astype(np.float32), labels


def test_de_features_shape():
    eeg, _ = _windows(4, 0)
    assert de_features(eeg, 200.0).shape == (4, 5 * 8)


def test_de_logistic_regression_learns_band_power_classes():
    train, test = _windows(60, 0), _windows(30, 1)
    result = de_logistic_regression(train, test, sfreq=200.0, n_labels=3)
    assert result.probs.shape == (30, 3)
    np.testing.assert_allclose(result.probs.sum(1), 1.0)
    assert np.mean(result.y_pred == test[1]) > 0.8


def test_de_logistic_regression_rejects_single_class():
    eeg, labels = _windows(6, 0)
    with pytest.raises(ValueError, match="single class"):
        de_logistic_regression((eeg, np.zeros(6, int)), (eeg, labels), sfreq=200.0, n_labels=3)


def test_eegnet_matches_paper_parameter_count():
    # EEGNet-8,2 for 64 channels, 128 samples and 4 classes has 2,388 trainable parameters:
    # 512 temporal + 16 BN + 1024 depthwise + 32 BN + 256 depthwise-separable + 256 pointwise + 32 BN + 260 dense.
    model = EEGNetV4(n_channels=64, n_times=128, n_classes=4, kernel_length=64)
    assert sum(p.numel() for p in model.parameters()) == 2388
    assert model(torch.randn(2, 64, 128)).shape == (2, 4)


def test_eegnet_max_norm_constraints():
    model = EEGNetV4(n_channels=8, n_times=128, n_classes=3, kernel_length=32)
    with torch.no_grad():
        model.spatial.weight.mul_(100)
        model.classifier.weight.mul_(100)
    model.apply_max_norm()
    assert model.spatial.weight.flatten(1).norm(dim=1).max() <= 1.0 + 1e-5
    assert model.classifier.weight.norm(dim=1).max() <= 0.25 + 1e-6


def test_eegnet_baseline_trains_and_predicts():
    train, test = _windows(24, 0, n_times=256), _windows(6, 1, n_times=256)
    result = eegnet_baseline(train, test, sfreq=200.0, n_labels=3, epochs=1, batch_size=12)
    assert result.probs.shape == (6, 3) and np.isfinite(result.info["final_train_loss"])
    np.testing.assert_allclose(result.probs.sum(1), 1.0, rtol=1e-5)


def test_eegnet_fast_convolutions_equal_the_plain_ones():
    torch.manual_seed(0)
    model = EEGNetV4(n_channels=6, n_times=96, n_classes=3, kernel_length=10).eval()
    eeg = torch.randn(2, 6, 96)
    x = torch.nn.functional.pad(eeg[:, None], (4, 5))  # Keras 'same' for a kernel of 10
    x = model.spatial(model.temporal_norm(model.temporal(x)))  # the paper's layers as plain Conv2d
    reference = model.classifier(model.block2(model.block1(x)).flatten(1))
    torch.testing.assert_close(model(eeg), reference, atol=1e-5, rtol=1e-4)


def test_eegnet_trains_as_the_paper_layers_in_the_paper_order():
    """In training the first batch norm normalises with the temporal outputs' batch statistics (computed without
    those outputs) and updates its running ones: outputs, gradients and statistics of the plain layers."""
    torch.manual_seed(0)
    model = EEGNetV4(n_channels=6, n_times=96, n_classes=3, kernel_length=11)
    with torch.no_grad():
        model.temporal_norm.weight.uniform_(0.5, 1.5)
        model.temporal_norm.bias.uniform_(-0.5, 0.5)
    plain = copy.deepcopy(model)
    eeg = torch.randn(4, 6, 96) * 2.0 + 0.5
    torch.manual_seed(1)
    out = model(eeg)
    torch.manual_seed(1)  # the same dropout masks
    x = plain.spatial(plain.temporal_norm(plain.temporal(torch.nn.functional.pad(eeg[:, None], (5, 5)))))
    reference = plain.classifier(plain.block2(plain.block1(x)).flatten(1))
    torch.testing.assert_close(out, reference, atol=1e-5, rtol=1e-4)
    out.square().sum().backward()
    reference.square().sum().backward()
    for name in ("temporal.weight", "spatial.weight", "classifier.weight"):
        torch.testing.assert_close(model.get_parameter(name).grad, plain.get_parameter(name).grad, atol=1e-5, rtol=1e-3)
    for name in ("running_mean", "running_var", "num_batches_tracked"):
        torch.testing.assert_close(getattr(model.temporal_norm, name), getattr(plain.temporal_norm, name))


def test_spatial_first_eegnet_is_eegnet_without_its_first_batch_norm():
    torch.manual_seed(0)
    paper = EEGNetV4(n_channels=6, n_times=96, n_classes=3, kernel_length=10).eval()
    fast = EEGNetV4SpatialFirst(n_channels=6, n_times=96, n_classes=3, kernel_length=10).eval()
    fast.load_state_dict({k: v for k, v in paper.state_dict().items() if not k.startswith("temporal_norm")})
    paper.temporal_norm = torch.nn.Identity()
    eeg = torch.randn(3, 6, 96)
    torch.testing.assert_close(fast(eeg), paper(eeg), atol=1e-5, rtol=1e-4)


def test_shallow_convnet_equals_its_two_convolutions():
    torch.manual_seed(0)
    model = ShallowConvNet(n_channels=6, n_times=200, n_classes=3, sfreq=100.0).eval()
    eeg = torch.randn(2, 6, 200)
    x = model.spatial(model.temporal(eeg[:, None]))  # the paper's layers as plain Conv2d
    x = torch.log(model.pool(model.norm(x).square()).clamp_min(1e-6))
    torch.testing.assert_close(model(eeg), model.classifier(x.flatten(1)), atol=1e-4, rtol=1e-4)


def test_precise_batch_norm_sets_the_training_statistics():
    train = _windows(40, 0, n_times=256)
    windows = _Windows(train)
    inputs = _standardiser(windows, "cpu")
    model = FBCNet(8, 256, 3, 200.0)
    precise_batch_norm(model, windows, inputs, batch_size=40)
    with torch.no_grad():
        bands = torch.fft.irfft(torch.fft.rfft(inputs(train[0]))[:, None] * model.band_masks[None, :, None], n=256)
        x = torch.einsum("bkct,kmc->bkmt", bands, model.spatial.weight.view(5, 8, -1)).flatten(1, 2)
        x = x + model.spatial.bias[None, :, None]
    torch.testing.assert_close(model.norm.running_mean, x.mean(dim=(0, 2)), atol=1e-4, rtol=1e-4)
    assert model.norm.momentum == 0.1 and not model.training


def test_fbcnet_learns_band_power_classes():
    train, test = _windows(90, 0), _windows(30, 1)
    result = fbcnet_baseline(train, test, sfreq=200.0, n_labels=3, epochs=15, batch_size=30)
    assert result.info["architecture"] == "FBCNet" and result.probs.shape == (30, 3)
    assert np.mean(result.y_pred == test[1]) > 0.6
    model = FBCNet(8, 400, 3, 200.0)
    with torch.no_grad():
        model.classifier.weight.mul_(100)
    model.apply_max_norm()
    assert model.classifier.weight.norm(dim=1).max() <= 0.5 + 1e-6
