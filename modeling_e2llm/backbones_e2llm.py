"""The pretrained EEG foundation backbones E2LLM can use, and the input contract each one was pretrained with.

A backbone's contract is what its published weights expect: sampling rate, window, channel table (the order of the
channel embeddings), input units and reference. `E2LLMEEGConfig` stores it; `feature_extractor_settings` turns it into
the `E2LLMFeatureExtractor` arguments, so the processor saved with a model always feeds the backbone what it was
pretrained on. Sources of each contract:

* **EEGPT** (Wang et al., NeurIPS 2024): 256 Hz, 4-s windows, patches of 64 samples, 62-name 10-20 table (the order of
  MNE's ``standard_1020`` montage, as in braindecode 1.8.1 ``EEGPT_CHANNELS``), **millivolts** and the **average
  reference**: the pretraining data are divided by 1000 from µV (or multiplied by 1000 from V) and the channel mean is
  subtracted (``datasets/pretrain/prepare_pretrain_dataset.py`` of github.com/BINE022/EEGPT).
* **CBraMod** (Wang et al., ICLR 2025): 200 Hz, 1-s patches of 200 samples, **units of 100 µV** (the authors'
  loaders divide µV by 100), band-pass 0.3-75 Hz (github.com/wjq-learning/CBraMod, ``preprocessing/``). CBraMod has
  no channel embedding; a depth-wise convolution over the channel axis makes the channel order matter, so channels
  are put in the order of the table (SEED's 62, the montage of its emotion fine-tuning) before the backbone.
* **LaBraM** (Jiang et al., ICLR 2024): 200 Hz, 1-s patches of 200 samples, its 128-name position table (braindecode
  1.8.1 ``LABRAM_CHANNEL_ORDER``), **units of 100 µV** (``engine_for_finetuning.py`` of github.com/935963004/LaBraM
  divides the µV samples by 100), band-pass 0.1-75 Hz with a 50 Hz notch (its ``dataset_maker``).

Channel names are matched by `channel_table_ids` as braindecode does, case-insensitively and exactly first (so
LaBraM's separate ``T3``-``T6`` rows and its bipolar ``FP1-F7`` ... rows are reachable), then through
`e2llm.electrodes.canonical_channel_name` (recording decorations such as ``EEG Fp1-REF``, old 10-20 temporal names
as aliases of their 10-10 positions where the table has no row of their own).
"""

from __future__ import annotations

import numpy as np

from .electrodes import ELECTRODE_NAMES, SEED_CHANNELS, canonical_channel_name

BACKBONES: tuple[str, ...] = ("patch", "eegpt", "cbramod", "labram")

# braindecode 1.8.1 `EEGPT_CHANNELS` (standard_1020 order), in 10-05 spelling.
EEGPT_CHANNELS: tuple[str, ...] = (
    "Fp1", "Fpz", "Fp2", "AF7", "AF3", "AF4", "AF8", "F7", "F5", "F3", "F1", "Fz", "F2", "F4", "F6", "F8", "FT7",
    "FC5", "FC3", "FC1", "FCz", "FC2", "FC4", "FC6", "FT8", "T7", "C5", "C3", "C1", "Cz", "C2", "C4", "C6", "T8", "TP7",
    "CP5", "CP3", "CP1", "CPz", "CP2", "CP4", "CP6", "TP8", "P7", "P5", "P3", "P1", "Pz", "P2", "P4", "P6", "P8", "PO7",
    "PO5", "PO3", "POz", "PO4", "PO6", "PO8", "O1", "Oz", "O2",
)

# braindecode 1.8.1 `EEGPT_19_CHANNELS`: what its default channel projection (`chan_proj_type="conv1d_constraint"`)
# writes, in this order, in 10-05 spelling.
EEGPT_PROJECTED_CHANNELS: tuple[str, ...] = (
    "Fp1", "Fp2", "F7", "F3", "Fz", "F4", "F8", "T7", "C3", "Cz", "C4", "T8", "P7", "P3", "Pz", "P4", "P8", "O1", "O2",
)

# braindecode 1.8.1 `LABRAM_CHANNEL_ORDER` (row i + 1 of the position embedding), 10-05 spelling where one exists.
LABRAM_CHANNELS: tuple[str, ...] = (
    "Fp1", "Fpz", "Fp2", "AF9", "AF7", "AF5", "AF3", "AF1", "AFz", "AF2", "AF4", "AF6", "AF8", "AF10", "F9", "F7", "F5",
    "F3", "F1", "Fz", "F2", "F4", "F6", "F8", "F10", "FT9", "FT7", "FC5", "FC3", "FC1", "FCz", "FC2", "FC4", "FC6", "FT8",
    "FT10", "T9", "T7", "C5", "C3", "C1", "Cz", "C2", "C4", "C6", "T8", "T10", "TP9", "TP7", "CP5", "CP3", "CP1", "CPz",
    "CP2", "CP4", "CP6", "TP8", "TP10", "P9", "P7", "P5", "P3", "P1", "Pz", "P2", "P4", "P6", "P8", "P10", "PO9", "PO7",
    "PO5", "PO3", "PO1", "POz", "PO2", "PO4", "PO6", "PO8", "PO10", "O1", "Oz", "O2", "O9", "CB1", "CB2", "Iz", "O10",
    "T3", "T5", "T4", "T6", "M1", "M2", "A1", "A2", "CFC1", "CFC2", "CFC3", "CFC4", "CFC5", "CFC6", "CFC7", "CFC8",
    "CCP1", "CCP2", "CCP3", "CCP4", "CCP5", "CCP6", "CCP7", "CCP8", "T1", "T2", "FTT9h", "TTP7h", "TPP9h", "FTT10h",
    "TPP8h", "TPP10h", "FP1-F7", "F7-T7", "T7-P7", "P7-O1", "FP2-F8", "F8-T8", "T8-P8", "P8-O2",
)

# Hyper-parameters of each backbone (`E2LLMEEGConfig.backbone_config`), defaults = the published models.
BACKBONE_DEFAULTS: dict[str, dict] = {
    "eegpt": {
        "patch_size": 64, "patch_stride": 32, "embed_dim": 512, "num_layers": 8, "num_heads": 8, "mlp_ratio": 4.0,
        "num_summary_tokens": 4, "qkv_bias": True, "layer_norm_eps": 1e-6, "num_channel_embeddings": 62,
        "dropout": 0.0, "attention_dropout": 0.0,
        # braindecode's `chan_proj_type` ("none", "conv1d_constraint", "linear"): input channels mixed into
        # `projected_channels` (its 19 standard ones) before the encoder; see e2llm.modeling_eegpt
        "channel_projection": "none", "projection_max_norm": 1.0, "projected_channels": [],
    },
    "cbramod": {
        "patch_size": 200, "num_layers": 12, "num_heads": 8, "intermediate_size": 800, "output_size": 200,
        # (out_channels, kernel, stride, padding, groups of the GroupNorm) of each temporal convolution
        "conv_stack": [[25, 49, 25, 24, 5], [25, 3, 1, 1, 5], [25, 3, 1, 1, 5]],
        "position_kernel": [19, 7], "layer_norm_eps": 1e-5, "dropout": 0.1,
    },
    "labram": {
        "patch_size": 200, "conv_channels": 8, "num_layers": 12, "num_heads": 10, "mlp_ratio": 4.0, "qkv_bias": False,
        "qk_norm": True, "layer_scale_init": 0.1, "num_time_embeddings": 16, "layer_norm_eps": 1e-6, "dropout": 0.0,
        "attention_dropout": 0.0,
    },
}

# The input contract of each backbone: what `E2LLMEEGConfig` fills in when the user leaves it unset.
CONTRACTS: dict[str, dict] = {
    "patch": {"sampling_rate": 200, "window_samples": 800, "channel_names": None, "input_unit_uv": None,
              "reference": None, "band": (0.1, 70.0)},
    "eegpt": {"sampling_rate": 256, "window_samples": 1024, "channel_names": EEGPT_CHANNELS, "input_unit_uv": 1000.0,
              "reference": "average", "band": (0.1, 70.0)},
    "cbramod": {"sampling_rate": 200, "window_samples": 800, "channel_names": SEED_CHANNELS, "input_unit_uv": 100.0,
                "reference": None, "band": (0.3, 75.0)},
    "labram": {"sampling_rate": 200, "window_samples": 800, "channel_names": LABRAM_CHANNELS, "input_unit_uv": 100.0,
               "reference": None, "band": (0.1, 75.0)},
}

_VALUE_TYPES = {bool: (bool,), int: (int,), float: (int, float), list: (list, tuple)}


def resolve_backbone_config(backbone: str, given: dict | None) -> dict:
    """The full hyper-parameter dict of `backbone`: its defaults updated with `given`, checked key by key."""
    if backbone not in BACKBONES:
        raise ValueError(f"backbone must be one of {BACKBONES}, got {backbone!r}")
    if backbone == "patch":
        if given:
            raise ValueError("backbone='patch' is configured by the E2LLMEEGConfig fields themselves; "
                             f"backbone_config must be empty, got {sorted(given)}")
        return {}
    defaults = BACKBONE_DEFAULTS[backbone]
    given = dict(given or {})
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise ValueError(f"unknown {backbone} setting(s) {unknown}; known: {sorted(defaults)}")
    resolved = {}
    for key, default in defaults.items():
        value = given.get(key, default)
        allowed = _VALUE_TYPES[type(default)] if type(default) in _VALUE_TYPES else (type(default),)
        if key == "patch_stride" and value is None:
            allowed = (type(None),)
        if isinstance(value, bool) and bool not in allowed or not isinstance(value, allowed):
            raise ValueError(f"{backbone} setting {key}={value!r} must be a {type(default).__name__}")
        resolved[key] = [list(v) for v in value] if key == "conv_stack" else (
            list(value) if isinstance(value, (list, tuple)) else value)
    return resolved


def validate_backbone(backbone: str, settings: dict, sampling_rate: int, window_samples: int) -> None:
    """Consistency checks between a backbone's settings and its input window; one clear error per problem."""
    if backbone == "patch":
        return
    patch = settings["patch_size"]
    if window_samples < patch:
        raise ValueError(f"window_samples={window_samples} is shorter than the {backbone} patch of {patch} samples")
    if backbone == "eegpt":
        if settings["embed_dim"] % settings["num_heads"]:
            raise ValueError(f"eegpt embed_dim={settings['embed_dim']} is not divisible by num_heads={settings['num_heads']}")
        stride = settings["patch_stride"]
        if stride is not None and stride <= 0:
            raise ValueError(f"eegpt patch_stride must be positive or None, got {stride}")
        validate_channel_projection(settings)
    elif backbone == "cbramod":
        if patch != 200:
            raise ValueError(f"cbramod's spectral embedding is built for 200-sample patches (101 FFT bins), got "
                             f"patch_size={patch}")
        if window_samples % patch:
            raise ValueError(f"window_samples={window_samples} is not a multiple of the cbramod patch {patch}")
        width = cbramod_hidden_size(settings)
        if settings["num_heads"] % 2 or (width // 2) % (settings["num_heads"] // 2):
            raise ValueError(f"cbramod needs an even num_heads whose half divides half the width {width}; "
                             f"got num_heads={settings['num_heads']}")
    elif backbone == "labram":
        if window_samples % patch:
            raise ValueError(f"window_samples={window_samples} is not a multiple of the labram patch {patch}")
        if patch % 8:
            raise ValueError(f"labram's temporal convolution has stride 8: patch_size must be a multiple of 8, got {patch}")
        if settings["conv_channels"] % 4:
            raise ValueError(f"labram conv_channels must be a multiple of 4 (GroupNorm of 4 groups), got "
                             f"{settings['conv_channels']}")
        if window_samples // patch > settings["num_time_embeddings"]:
            raise ValueError(f"a {window_samples}-sample window has {window_samples // patch} patches, more than the "
                             f"{settings['num_time_embeddings']} time embeddings of this labram")
        if labram_hidden_size(settings) % settings["num_heads"]:
            raise ValueError(f"labram width {labram_hidden_size(settings)} is not divisible by num_heads="
                             f"{settings['num_heads']}")


def validate_channel_projection(settings: dict) -> None:
    """Checks of an EEGPT `channel_projection` and the `projected_channels` it writes."""
    kind, outputs = settings["channel_projection"], settings["projected_channels"]
    if kind not in ("none", "conv1d_constraint", "linear"):
        raise ValueError(f"eegpt channel_projection must be 'none', 'conv1d_constraint' or 'linear' (braindecode's "
                         f"chan_proj_type), got {kind!r}")
    if kind == "none":
        if outputs:
            raise ValueError(f"eegpt projected_channels {outputs} needs a channel_projection; it is 'none'")
        return
    if not outputs:
        raise ValueError(f"eegpt channel_projection={kind!r} needs projected_channels: the channels it writes "
                         "(braindecode's 19 standard ones)")
    ids = channel_table_ids(outputs, EEGPT_CHANNELS)
    unknown = [name for name, row in zip(outputs, ids) if row < 0]
    if unknown:
        raise ValueError(f"eegpt projected_channels {unknown} are not in the EEGPT channel table")
    if ids.max() >= settings["num_channel_embeddings"] or len(set(ids.tolist())) != len(ids):
        raise ValueError(f"eegpt projected_channels must be distinct rows of the {settings['num_channel_embeddings']} "
                         f"channel embeddings, got {outputs}")
    if kind == "conv1d_constraint" and not settings["projection_max_norm"] > 0:
        raise ValueError(f"eegpt projection_max_norm must be > 0, got {settings['projection_max_norm']}")


def cbramod_hidden_size(settings: dict) -> int:
    """Width of CBraMod's tokens: channels x length of a patch after its temporal convolutions."""
    length = settings["patch_size"]
    for _, kernel, stride, padding, _ in settings["conv_stack"]:
        length = int((length + 2 * padding - kernel) / stride + 1)
    return settings["conv_stack"][-1][0] * length


def labram_hidden_size(settings: dict) -> int:
    """Width of LaBraM's tokens: conv channels x patch length after the stride-8 convolution."""
    return settings["conv_channels"] * ((settings["patch_size"] - 1) // 8 + 1)


def backbone_output_size(backbone: str, settings: dict) -> int:
    """Width of the tokens a backbone hands to the pooler (and so to the projector)."""
    if backbone == "eegpt":
        return settings["embed_dim"]
    if backbone == "cbramod":
        return settings["output_size"]
    if backbone == "labram":
        return labram_hidden_size(settings)
    raise ValueError(f"backbone {backbone!r} has no separate output size")


def backbone_num_patches(backbone: str, settings: dict, window_samples: int) -> int:
    """Time patches per window (EEGPT pads the window's end like braindecode so the last patch fits)."""
    patch = settings["patch_size"]
    if backbone == "eegpt" and settings["patch_stride"] is not None:
        stride = settings["patch_stride"]
        return -(-(window_samples - patch) // stride) + 1
    return -(-window_samples // patch) if backbone == "eegpt" else window_samples // patch


def channel_table_ids(channel_names, table) -> np.ndarray:
    """Row of each channel in `table` (`(n_channels,)` int64, -1 if unknown): exact name (any case) first, then the
    channel's 10-05 spelling."""
    exact = {str(name).upper(): i for i, name in enumerate(table)}
    canonical = {}
    for i, name in enumerate(table):
        canonical.setdefault(canonical_channel_name(name) or str(name).upper(), i)
    ids = []
    for name in channel_names:
        key = str(name).strip()
        if key.upper() in exact:
            ids.append(exact[key.upper()])
        else:
            spelled = canonical_channel_name(key)
            ids.append(canonical.get(spelled, -1) if spelled is not None else -1)
    return np.array(ids, dtype=np.int64)


def check_channel_table(names) -> list[str]:
    """A channel table as a list of distinct names (the position of a name is its embedding row)."""
    names = [str(n) for n in names]
    if not names:
        raise ValueError("channel_names must list at least one channel")
    duplicates = sorted({n for n in names if [m.upper() for m in names].count(n.upper()) > 1})
    if duplicates:
        raise ValueError(f"channel_names lists {duplicates} more than once (names are case-insensitive)")
    return names


def feature_extractor_settings(eeg_config) -> dict:
    """`E2LLMFeatureExtractor` arguments that feed the encoder of `eeg_config` what it expects."""
    contract = CONTRACTS[eeg_config.backbone]
    l_freq, h_freq = contract["band"]
    h_freq = min(h_freq, eeg_config.sampling_rate / 2 - 1.0)
    settings = {
        "sampling_rate": eeg_config.sampling_rate,
        "window_seconds": eeg_config.window_samples / eeg_config.sampling_rate,
        "window_stride_seconds": eeg_config.window_samples / eeg_config.sampling_rate,
        "l_freq": l_freq,
        "h_freq": h_freq,
        "electrode_names": list(eeg_config.channel_names or ELECTRODE_NAMES),
    }
    if eeg_config.backbone != "patch":
        reference = None if eeg_config.reference == "none" else eeg_config.reference
        settings.update(normalization="none", reference=reference, output_unit_uv=eeg_config.input_unit_uv,
                        min_channels=eeg_config.min_channels)
    return settings


__all__ = [
    "BACKBONES",
    "BACKBONE_DEFAULTS",
    "CONTRACTS",
    "EEGPT_CHANNELS",
    "EEGPT_PROJECTED_CHANNELS",
    "LABRAM_CHANNELS",
    "backbone_num_patches",
    "backbone_output_size",
    "cbramod_hidden_size",
    "channel_table_ids",
    "check_channel_table",
    "feature_extractor_settings",
    "labram_hidden_size",
    "resolve_backbone_config",
    "validate_backbone",
    "validate_channel_projection",
]
