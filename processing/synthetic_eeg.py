"""Synthetic EEG that behaves like real EEG, with emotion classes that differ the way real EEG does.

Each trial is built in the frequency domain for all channels at once:

1. **Background**: complex white noise per source, mixed spatially by a Gaussian kernel of the
   distances between electrode positions (`e2llm.processing.montage`), shaped by an aperiodic
   ``1 / (f^2 + knee^2)^(exponent / 2)`` spectrum (pink-like, subject-specific exponent) plus a
   posterior-weighted alpha peak at the subject's alpha frequency.
2. **Band-power patterns**: log-power gains per band (δ θ α β γ) and channel, the sum of the
   emotion's pattern (scaled by the subject's responsiveness and the clip's intensity), the
   subject's own pattern and the trial's own random pattern (spatially smooth). The emotion
   patterns include frontal alpha asymmetry: approach emotions (happiness, anger, surprise) raise
   right-frontal alpha relative to left (positive ``ln F4 - ln F3``), withdrawal emotions
   (sadness, fear, disgust) lower it, neutral leaves it.
3. **Non-stationarity**: a slow (< 0.3 Hz), spatially smooth amplitude envelope, so windows of one
   trial differ.
4. **Artefacts**: blinks (Poisson, 250-450 ms bumps of 60-150 µV, strongest at Fp1/Fpz/Fp2, decaying
   with distance from the eyes) and 50 Hz line noise; with ``preprocessed=True`` the signal looks
   like the SEED-VII official preprocessing instead (no line noise, nothing above 70 Hz).

Everything is deterministic: trial `(subject, trial)` of a generator with seed `seed` draws from
``numpy.random.default_rng([seed, subject, trial])``, whatever order trials are made in.

Knobs for harder data (`harder_config`): a weaker class signal (`effect_size`), subjects whose responsiveness and own
patterns differ more (`responsiveness_range`, `subject_pattern_sd`) and who show each emotion in their own way
(`subject_emotion_sd`). `SyntheticEEG.non_emotion_trial` makes signals that are not emotion EEG (noise, flat, mains,
muscle, eyes-closed rest) for abstention checks. Datasets of these trials: `e2llm.processing.synthetic`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy import signal

from e2llm.configuration_e2llm import SEED_VII_EMOTIONS
from e2llm.electrodes import SEED_CHANNELS
from e2llm.processing.features import BANDS
from e2llm.processing.montage import make_montage
from e2llm.processing.recording import Recording

# Log-power gains (natural log) of each emotion: {emotion: [(band, area, gain), ...]}, plus FAA below. Areas are the
# generator's soft spatial maps over the scalp (`PATTERN_AREAS`, see `_pattern_areas`), not the evidence regions of
# rationales (`e2llm.eeg_evidence_features.REGIONS`, hard assignments of 10-05 names): "posterior" spans parietal and
# occipital sites, and every map overlaps its neighbours.
EMOTION_PATTERNS: dict[str, tuple[tuple[str, str, float], ...]] = {
    "happiness": (("beta", "temporal", 0.35), ("gamma", "temporal", 0.45), ("alpha", "posterior", -0.15)),
    "sadness": (("alpha", "posterior", 0.40), ("delta", "frontal", 0.25), ("gamma", "temporal", -0.30)),
    "fear": (("theta", "frontal", 0.30), ("beta", "central", 0.35), ("alpha", "posterior", -0.35)),
    "disgust": (("gamma", "frontal", 0.40), ("delta", "posterior", 0.30), ("theta", "central", -0.25)),
    "neutral": (),
    "anger": (("beta", "frontal", 0.45), ("theta", "temporal", 0.25), ("delta", "central", -0.25)),
    "surprise": (("theta", "central", 0.45), ("delta", "frontal", -0.25), ("beta", "posterior", 0.25)),
}
# Frontal alpha asymmetry per emotion (natural-log alpha power, right minus left, at the outermost frontal sites).
EMOTION_FAA: dict[str, float] = {
    "happiness": 0.35, "sadness": -0.35, "fear": -0.3, "disgust": -0.25, "neutral": 0.0, "anger": 0.3, "surprise": 0.2,
}
PATTERN_AREAS: tuple[str, ...] = ("frontal", "central", "temporal", "posterior")
EYE_OFFSET_M = np.array([0.0, 0.03, -0.04])  # eyes: in front of and below Fpz
# Signals that are not emotion EEG (`SyntheticEEG.non_emotion_trial`), for abstention checks.
NON_EMOTION_KINDS: tuple[str, ...] = ("noise", "flat", "line_noise", "muscle", "eyes_closed")
EYES_CLOSED_ALPHA = 8.0  # eyes-closed rest: the posterior alpha peak this many times the subject's eyes-open one
# A harder set (`harder_config`): a weaker class signal, subjects that differ more in their EEG and in how they show
# each emotion. On 2 subjects x 80 clips of 20 s, DE + logistic regression's balanced accuracy on validation trials
# was 0.57 (0.68 with the defaults) and across subjects 0.30.
HARDER: dict = {"effect_size": 0.75, "subject_pattern_sd": 0.3, "subject_emotion_sd": 0.05,
                "responsiveness_range": (0.5, 1.5)}


@dataclass
class SyntheticEEGConfig:
    """Parameters of the generator (amplitudes in µV, frequencies in Hz, log gains in natural log of power).

    Attributes:
        sfreq, channel_names, label_names: rate, channels (10-05 names with positions) and classes;
            every label must have an entry in `EMOTION_PATTERNS` and `EMOTION_FAA`.
        effect_size: multiplies the emotion patterns and FAA (0 = no class signal).
        responsiveness_range: each subject's responsiveness (how strongly its EEG shows the emotion patterns) is
            drawn uniformly from this range.
        subject_emotion_sd: SD of each subject's own deviation from each emotion's pattern (spatially smooth log-power
            gains per label and band): subjects express an emotion differently (0 = all alike).
        background_uv: typical RMS of the background per channel.
        spatial_scale_m: width of the Gaussian mixing kernel over electrode distances (metres).
        subject_pattern_sd, trial_pattern_sd: SD of the subject's and the trial's own random log-power
            gains per band (spatially smooth maps).
        channel_gain_sd: SD of each subject's log gain per channel (electrode impedance, skull thickness).
        envelope_sd: SD of the slow log-amplitude envelope within a trial.
        blink_rate_hz: mean blink rate (each subject draws its own around it); 0 disables blinks.
        line_freq, line_noise_uv: mains frequency and its typical amplitude.
        preprocessed: mimic SEED-VII's official preprocessing (no line noise, nothing above 70 Hz).
    """

    sfreq: float = 200.0
    channel_names: tuple[str, ...] = SEED_CHANNELS
    label_names: tuple[str, ...] = SEED_VII_EMOTIONS
    effect_size: float = 1.0
    responsiveness_range: tuple[float, float] = (0.8, 1.2)
    subject_emotion_sd: float = 0.0
    background_uv: float = 15.0
    spatial_scale_m: float = 0.03
    subject_pattern_sd: float = 0.15
    trial_pattern_sd: float = 0.15
    channel_gain_sd: float = 0.1
    envelope_sd: float = 0.15
    blink_rate_hz: float = 0.25
    line_freq: float = 50.0
    line_noise_uv: float = 2.0
    preprocessed: bool = False

    def __post_init__(self):
        self.channel_names = tuple(self.channel_names)
        self.label_names = tuple(self.label_names)
        unknown = [n for n in self.label_names if n not in EMOTION_PATTERNS or n not in EMOTION_FAA]
        if unknown:
            raise ValueError(f"no synthetic pattern for labels {unknown}; known: {sorted(EMOTION_PATTERNS)}")
        if not self.sfreq > 2 * max(high for _, high in BANDS.values()):
            raise ValueError(f"sfreq={self.sfreq} Hz is too low for the gamma band (needs > 98 Hz)")
        self.responsiveness_range = tuple(float(v) for v in self.responsiveness_range)
        low, high = self.responsiveness_range if len(self.responsiveness_range) == 2 else (-1.0, -1.0)
        if not 0 <= low <= high:
            raise ValueError(f"responsiveness_range must be (low, high) with 0 <= low <= high, got "
                             f"{self.responsiveness_range}")
        for name in ("effect_size", "background_uv", "spatial_scale_m", "subject_pattern_sd", "trial_pattern_sd",
                     "envelope_sd", "blink_rate_hz", "line_noise_uv", "subject_emotion_sd", "channel_gain_sd"):
            if not np.isfinite(getattr(self, name)) or getattr(self, name) < 0:
                raise ValueError(f"{name} must be a finite non-negative number, got {getattr(self, name)!r}")
        if self.background_uv == 0 or self.spatial_scale_m == 0:
            raise ValueError("background_uv and spatial_scale_m must be positive")


@lru_cache(maxsize=8)
def _positions(channel_names: tuple[str, ...]) -> np.ndarray:
    """`(n_channels, 3)` electrode positions in metres (x right, y front, z up)."""
    ch_pos = make_montage(channel_names).get_positions()["ch_pos"]
    return np.array([ch_pos[name] for name in channel_names], dtype=np.float64)


def _pattern_areas(pos: np.ndarray) -> dict[str, np.ndarray]:
    """The soft scalp areas of `PATTERN_AREAS`, each `(n_channels,)` in [0, 1]."""
    x, y = pos[:, 0] / np.abs(pos[:, 0]).max(), pos[:, 1] / np.abs(pos[:, 1]).max()

    def sigmoid(v):
        return 1.0 / (1.0 + np.exp(-v))

    return {
        "frontal": sigmoid((y - 0.35) / 0.12),
        "central": np.exp(-(y**2 + (0.6 * x) ** 2) / (2 * 0.3**2)),
        "temporal": sigmoid((np.abs(x) - 0.65) / 0.08) * np.exp(-(y**2) / (2 * 0.5**2)),
        "posterior": sigmoid((-y - 0.45) / 0.12),
    }


def _mixing_matrix(pos: np.ndarray, scale: float) -> np.ndarray:
    """Gaussian spatial mixing over electrode distances, rows of unit norm: `(n_channels, n_channels)`."""
    dist2 = ((pos[:, None, :] - pos[None, :, :]) ** 2).sum(-1)
    mix = np.exp(-dist2 / (2 * scale**2))
    return mix / np.linalg.norm(mix, axis=1, keepdims=True)


def _band_masks(freqs: np.ndarray, width: float = 0.5) -> np.ndarray:
    """Soft indicators of the five bands over `freqs`: `(n_bands, n_freqs)`."""
    def sigmoid(v):
        return 1.0 / (1.0 + np.exp(-np.clip(v, -60, 60)))

    return np.stack([sigmoid((freqs - lo) / width) - sigmoid((freqs - hi) / width) for lo, hi in BANDS.values()])


def emotion_patterns(config: SyntheticEEGConfig) -> np.ndarray:
    """Log-power gains `(n_labels, n_bands, n_channels)` of each class (FAA included), before `effect_size`."""
    pos = _positions(config.channel_names)
    areas = _pattern_areas(pos)
    bands = list(BANDS)
    alpha = bands.index("alpha")
    # lateral frontal weight: +1 right, -1 left, strongest at the outermost frontal sites (F7/F8, AF3/AF4)
    lateral = np.clip(pos[:, 0] / np.abs(pos[:, 0]).max(), -1, 1) * areas["frontal"]
    out = np.zeros((len(config.label_names), len(bands), len(config.channel_names)))
    for k, name in enumerate(config.label_names):
        for band, area, gain in EMOTION_PATTERNS[name]:
            out[k, bands.index(band)] += gain * areas[area]
        out[k, alpha] += EMOTION_FAA[name] * lateral
    return out


@dataclass
class SubjectProfile:
    """A subject's own EEG: spectrum shape, pattern, responsiveness, channel gains, artefact rates."""

    exponent: float
    alpha_freq: float
    alpha_gain: float
    responsiveness: float
    channel_gain: np.ndarray  # (n_channels,)
    pattern: np.ndarray  # (n_bands, n_channels) log-power gains
    emotion_patterns: np.ndarray  # (n_labels, n_bands, n_channels): this subject's emotion patterns, effect included
    blink_rate_hz: float
    line_uv: np.ndarray  # (n_channels,)
    line_phase: np.ndarray  # (n_channels,)


class SyntheticEEG:
    """Generator of synthetic EEG trials in µV (see the module docstring).

    >>> gen = SyntheticEEG(seed=0)
    >>> x = gen.trial(subject=1, trial=1, emotion=0, n_times=800)
    >>> x.shape, x.dtype
    ((62, 800), dtype('float64'))
    """

    def __init__(self, config: SyntheticEEGConfig | None = None, seed: int = 0):
        self.config = config or SyntheticEEGConfig()
        self.seed = int(seed)
        pos = _positions(self.config.channel_names)
        self._mix = _mixing_matrix(pos, self.config.spatial_scale_m)
        self._areas = _pattern_areas(pos)
        self._posterior = self._areas["posterior"]
        self._patterns = emotion_patterns(self.config) * self.config.effect_size
        names = list(self.config.channel_names)
        eyes = pos[names.index("Fpz")] if "Fpz" in names else pos[np.argmax(pos[:, 1])]  # else the front-most site
        self._blink_weight = np.exp(-np.linalg.norm(pos - (eyes + EYE_OFFSET_M), axis=1) / 0.035)
        self._blink_weight /= self._blink_weight.max()

    @property
    def n_channels(self) -> int:
        return len(self.config.channel_names)

    def _smooth_maps(self, rng: np.random.Generator, n_maps: int) -> np.ndarray:
        """`(n_maps, n_channels)` spatially smooth Gaussian maps with unit SD per channel."""
        maps = rng.standard_normal((n_maps, self.n_channels)) @ self._mix.T
        return maps / maps.std(axis=1, keepdims=True)

    def subject(self, subject: int) -> SubjectProfile:
        """The profile of subject `subject` (deterministic from the generator's seed)."""
        rng = np.random.default_rng([self.seed, int(subject), 0x5B])
        cfg = self.config
        n_bands, n_labels = len(BANDS), len(cfg.label_names)
        own = np.random.default_rng([self.seed, int(subject), 0xE1])  # a stream of its own: defaults draw as before
        own_patterns = cfg.subject_emotion_sd * self._smooth_maps(own, n_labels * n_bands)
        return SubjectProfile(
            exponent=float(rng.uniform(1.6, 2.2)),
            alpha_freq=float(rng.uniform(9.0, 11.5)),
            alpha_gain=float(rng.uniform(2.0, 6.0)),
            responsiveness=float(rng.uniform(*cfg.responsiveness_range)),
            channel_gain=np.exp(cfg.channel_gain_sd * rng.standard_normal(self.n_channels)),
            pattern=cfg.subject_pattern_sd * self._smooth_maps(rng, n_bands),
            emotion_patterns=self._patterns + own_patterns.reshape(n_labels, n_bands, self.n_channels),
            blink_rate_hz=float(cfg.blink_rate_hz * rng.uniform(0.5, 1.5)),
            line_uv=cfg.line_noise_uv * rng.uniform(0.3, 1.5, self.n_channels),
            line_phase=rng.uniform(0, 2 * np.pi, self.n_channels),
        )

    def _blinks(self, rng: np.random.Generator, rate: float, n_times: int) -> np.ndarray:
        """`(n_channels, n_times)` blink artefacts in µV."""
        sfreq = self.config.sfreq
        n_blinks = rng.poisson(rate * n_times / sfreq)
        if n_blinks == 0:
            return np.zeros((self.n_channels, n_times))
        duration = rng.uniform(0.25, 0.45)
        template = signal.windows.hann(max(int(duration * sfreq), 3)) ** 1.5
        train = np.zeros(n_times)
        np.add.at(train, rng.integers(0, n_times, n_blinks), rng.uniform(60.0, 150.0, n_blinks))
        trace = signal.fftconvolve(train, template, mode="same")
        return self._blink_weight[:, None] * trace[None, :]

    def _power_shape(self, profile: SubjectProfile, freqs: np.ndarray, alpha_factor: float) -> np.ndarray:
        """Aperiodic background + posterior alpha peak (`alpha_factor` times the subject's): `(n_channels, n_freqs)`."""
        cfg = self.config
        aperiodic = 1.0 / (freqs**2 + 1.0) ** (profile.exponent / 2)
        alpha_peak = (np.exp(-((freqs - profile.alpha_freq) ** 2) / (2 * 1.2**2)) * 0.02 * profile.alpha_gain
                      * alpha_factor)
        power = aperiodic[None, :] + (0.3 + self._posterior[:, None]) * alpha_peak[None, :]
        power[:, 0] = 0.0
        if cfg.preprocessed:  # official SEED-VII chain: low-pass 70 Hz, 50 Hz notch
            power = power / (1.0 + (freqs / 70.0) ** 16)
            power = power * (1.0 - np.exp(-((freqs - cfg.line_freq) ** 2) / (2 * 0.7**2)))
        return power

    def trial(self, subject: int, trial: int, emotion: int, n_times: int, intensity: float | None = None,
              alpha_factor: float = 1.0) -> np.ndarray:
        """One trial `(n_channels, n_times)` float64 in µV of class index `emotion`.

        `intensity` scales the class pattern for this clip (default: drawn in 0.7..1.3); `alpha_factor` scales the
        subject's posterior alpha peak (e.g. `EYES_CLOSED_ALPHA` for eyes-closed rest).
        """
        cfg = self.config
        if not 0 <= int(emotion) < len(cfg.label_names):
            raise ValueError(f"emotion index {emotion} outside 0..{len(cfg.label_names) - 1}")
        if int(n_times) < 2:
            raise ValueError(f"n_times must be at least 2, got {n_times}")
        n_times = int(n_times)
        profile = self.subject(subject)
        rng = np.random.default_rng([self.seed, int(subject), int(trial) + 1])
        intensity = float(rng.uniform(0.7, 1.3)) if intensity is None else float(intensity)
        freqs = np.fft.rfftfreq(n_times, 1.0 / cfg.sfreq)

        # log-power gains (n_bands, n_channels) -> log-amplitude over frequency (n_channels, n_freqs)
        gains = (profile.responsiveness * intensity * profile.emotion_patterns[int(emotion)] + profile.pattern
                 + cfg.trial_pattern_sd * self._smooth_maps(rng, len(BANDS)))
        log_amplitude = 0.5 * gains.T @ _band_masks(freqs)

        power = self._power_shape(profile, freqs, alpha_factor)
        scale = cfg.background_uv * n_times / np.sqrt(2.0 * power.sum(axis=1, keepdims=True))

        white = rng.standard_normal((self.n_channels, freqs.size)) + 1j * rng.standard_normal((self.n_channels, freqs.size))
        spectrum = (self._mix @ white) * np.sqrt(power) * scale / np.sqrt(2.0) * np.exp(log_amplitude)
        data = np.fft.irfft(spectrum, n=n_times, axis=-1)

        # slow envelope (< 0.3 Hz), spatially smooth
        slow = (freqs > 0) & (freqs < 0.3)
        if cfg.envelope_sd > 0 and slow.any():
            env = np.zeros((self.n_channels, freqs.size), dtype=complex)
            env[:, slow] = self._mix @ (rng.standard_normal((self.n_channels, slow.sum()))
                                        + 1j * rng.standard_normal((self.n_channels, slow.sum())))
            env = np.fft.irfft(env, n=n_times, axis=-1)
            env /= env.std() + 1e-12
            data *= np.exp(cfg.envelope_sd * env - cfg.envelope_sd**2 / 2)

        data *= profile.channel_gain[:, None]
        if profile.blink_rate_hz > 0:
            data += self._blinks(rng, profile.blink_rate_hz, n_times)
        if not cfg.preprocessed and cfg.line_noise_uv > 0:
            t = np.arange(n_times) / cfg.sfreq
            data += profile.line_uv[:, None] * np.sin(2 * np.pi * cfg.line_freq * t[None, :] + profile.line_phase[:, None])
        return data

    def non_emotion_trial(self, kind: str, subject: int, trial: int, n_times: int) -> np.ndarray:
        """A trial `(n_channels, n_times)` µV of a signal that is not emotion EEG (`NON_EMOTION_KINDS`), for checks
        that a model abstains: ``noise`` (white noise at the background's RMS), ``flat`` (a DC offset and 0.05 µV of
        noise), ``line_noise`` (mains at 20 µV and 0.1 µV of noise), ``muscle`` (EEG without class pattern plus 20-95 Hz
        muscle activity of ~30 µV RMS over frontal and temporal sites), ``eyes_closed`` (EEG without class pattern
        whose posterior alpha peak is `EYES_CLOSED_ALPHA` times the subject's)."""
        cfg = self.config
        rng = np.random.default_rng([self.seed, int(subject), int(trial) + 1, 0xAB])
        t = np.arange(int(n_times)) / cfg.sfreq
        if kind == "noise":
            return cfg.background_uv * rng.standard_normal((self.n_channels, int(n_times)))
        if kind == "flat":
            return 5.0 + 0.05 * rng.standard_normal((self.n_channels, int(n_times)))
        if kind == "line_noise":
            phase = rng.uniform(0, 2 * np.pi, (self.n_channels, 1))
            return 20.0 * np.sin(2 * np.pi * cfg.line_freq * t + phase) + 0.1 * rng.standard_normal((self.n_channels,
                                                                                                        len(t)))
        if kind == "eyes_closed":
            return self.trial(subject, trial, 0, n_times, intensity=0.0, alpha_factor=EYES_CLOSED_ALPHA)
        if kind == "muscle":
            sos = signal.butter(4, [20.0, min(95.0, 0.45 * cfg.sfreq)], btype="bandpass", fs=cfg.sfreq, output="sos")
            emg = signal.sosfiltfilt(sos, rng.standard_normal((self.n_channels, int(n_times))), axis=-1)
            weight = np.maximum(self._areas["temporal"], self._areas["frontal"])[:, None]
            emg *= 30.0 * weight / (emg.std(axis=-1, keepdims=True) + 1e-12)
            return self.trial(subject, trial, 0, n_times, intensity=0.0) + emg
        raise ValueError(f"unknown non-emotion signal {kind!r}; use one of {NON_EMOTION_KINDS}")

    def recording(self, subject: int, trial: int, emotion: int, n_times: int) -> Recording:
        """`trial` as a `Recording` in µV."""
        return Recording(
            data=self.trial(subject, trial, emotion, n_times),
            sfreq=self.config.sfreq,
            ch_names=list(self.config.channel_names),
            units="uV",
            provenance={"source": f"synthetic(seed={self.seed}, subject={subject}, trial={trial})", "reader": "synthetic"},
        )


def harder_config(**overrides) -> SyntheticEEGConfig:
    """The generator's config for a harder set (`HARDER`: weaker class signal, subjects that differ more), with
    SEED-VII's official preprocessing (as `write_synthetic_seed_vii` writes) unless overridden."""
    return SyntheticEEGConfig(**{"preprocessed": True, **HARDER, **overrides})


__all__ = [
    "EMOTION_FAA",
    "EMOTION_PATTERNS",
    "EYES_CLOSED_ALPHA",
    "HARDER",
    "NON_EMOTION_KINDS",
    "PATTERN_AREAS",
    "SubjectProfile",
    "SyntheticEEG",
    "SyntheticEEGConfig",
    "emotion_patterns",
    "harder_config",
]
