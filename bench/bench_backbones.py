"""Benchmark of the foundation backbones (prints JSON).

Two measurements, both on CPU with random weights (no download):

``vs-braindecode``: e2llm's EEGPT backbone against braindecode 1.8.1's `EEGPT` at the published size (62 channels,
4 s at 256 Hz, width 512, 8 layers, 4 summary tokens, stride 32) with the same weights and the same input in one
process: the max abs difference and the forward times (median over `--repeats`, the two models alternating). braindecode
cannot be imported in the project's environment, so this runs in the separate environment of
`tests/fixtures/make_backbone_fixtures.py` with transformers added, e2llm imported from this checkout:

    /tmp/bd-venv/bin/pip install transformers==5.24.0
    /tmp/bd-venv/bin/python bench/bench_backbones.py vs-braindecode --threads 2

``prefill``: the share of EEGPT encoder + projector in a Qwen3-8B-shaped prefill of one prompt with one 4-s window.
A full Qwen3-8B in float32 needs ~33 GB; the decoder layers are identical, so `--layers` of them (default 2) are
timed and the layer time is scaled to Qwen3-8B's 36 layers; the embedding lookup and the last-token LM head
(151936 x 4096) are timed at full size.

    python bench/bench_backbones.py prefill --threads 2
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
# Qwen/Qwen3-8B's config.json (architecture fields).
QWEN3_8B = {"model_type": "qwen3", "hidden_size": 4096, "intermediate_size": 12288, "num_hidden_layers": 36,
            "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 128, "vocab_size": 151936,
            "max_position_embeddings": 40960, "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0},
            "tie_word_embeddings": False, "rms_norm_eps": 1e-6}
EEGPT_PUBLISHED = {"patch_size": 64, "patch_stride": 32, "embed_dim": 512, "depth": 8, "num_heads": 8,
                   "mlp_ratio": 4.0, "embed_num": 4, "qkv_bias": True}


def median_seconds(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def import_e2llm_from_checkout():
    """Import this checkout's `modeling_e2llm/` as `e2llm` (setup.cfg's mapping) where e2llm is not installed."""
    try:
        import e2llm  # noqa: F401
    except ImportError:
        spec = importlib.util.spec_from_file_location(
            "e2llm", ROOT / "modeling_e2llm" / "__init__.py", submodule_search_locations=[str(ROOT / "modeling_e2llm")]
        )
        module = importlib.util.module_from_spec(spec)
        sys.modules["e2llm"] = module
        spec.loader.exec_module(module)


def vs_braindecode(args) -> dict:
    spec = importlib.util.spec_from_file_location("make_backbone_fixtures",
                                                  ROOT / "tests" / "fixtures" / "make_backbone_fixtures.py")
    fixtures = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fixtures)
    # e2llm (and transformers, which probes for torchaudio) first: the stand-in must not look like a real torchaudio
    import_e2llm_from_checkout()
    from e2llm import E2LLMEEGConfig
    from e2llm.backbones_e2llm import channel_table_ids
    from e2llm.convert_backbones import load_backbone_state, to_e2llm_state_dict
    from e2llm.modeling_eeg_backbones import build_backbone

    fixtures.install_torchaudio_stand_in()  # only in this process; see that script's docstring
    import warnings

    warnings.simplefilter("ignore")
    import braindecode
    from braindecode.models import EEGPT
    from braindecode.models.eegpt import EEGPT_CHANNELS

    torch.manual_seed(0)
    reference = EEGPT(n_chans=62, n_times=1024, sfreq=256, chs_info=[{"ch_name": n} for n in EEGPT_CHANNELS],
                      chan_proj_type="none", return_encoder_output=True, **EEGPT_PUBLISHED).eval()
    config = E2LLMEEGConfig(backbone="eegpt")  # the published sizes are the defaults
    ours = build_backbone(config).eval()
    load_backbone_state(ours, "eegpt", to_e2llm_state_dict("eegpt", reference.state_dict())[0])
    x = torch.randn(args.batch, 62, 1024) * 0.02  # ~20 µV in mV
    ids = torch.as_tensor(channel_table_ids(EEGPT_CHANNELS, config.channel_names)).expand(args.batch, -1)
    times = {"braindecode": [], "e2llm": []}
    with torch.inference_mode():
        expected, got = reference(x), ours(x, ids)
        for _ in range(args.repeats + 1):  # alternate, so both see the same machine load; the first pair warms up
            for name, fn in (("braindecode", lambda: reference(x)), ("e2llm", lambda: ours(x, ids))):
                start = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - start)
        # control: the comparison does see a change of one weight by 1e-3
        ours.layers[0].mlp.fc2.bias.data[0] += 1e-3
        control = float((ours(x, ids) - expected).abs().max())
        ours.layers[0].mlp.fc2.bias.data[0] -= 1e-3
    braindecode_s, e2llm_s = (statistics.median(times[k][1:]) for k in ("braindecode", "e2llm"))
    return {
        "benchmark": "EEGPT backbone forward, e2llm vs braindecode (same weights, same input, one process)",
        "braindecode_version": braindecode.__version__,
        "torch_version": torch.__version__,
        "batch_windows": args.batch,
        "input": "(batch, 62, 1024): 4 s at 256 Hz, 62-channel EEGPT table",
        "parameters": sum(p.numel() for p in ours.parameters()),
        "max_abs_difference": float((got - expected).abs().max()),
        "max_abs_difference_after_changing_one_bias_by_1e-3": control,
        "output_shape": list(got.shape),
        "braindecode_seconds": round(braindecode_s, 4),
        "e2llm_seconds": round(e2llm_s, 4),
        "e2llm_over_braindecode": round(e2llm_s / braindecode_s, 3),
        "repeats": args.repeats,
        "torch_threads": torch.get_num_threads(),
    }


def prefill(args) -> dict:
    import numpy as np
    from transformers import AutoConfig, AutoModel

    from e2llm import SEED_CHANNELS, E2LLMEEGConfig
    from e2llm.backbones_e2llm import feature_extractor_settings
    from e2llm.configuration_e2llm import E2LLMConfig
    from e2llm.feature_extraction_e2llm import E2LLMFeatureExtractor
    from e2llm.modeling_e2llm import E2LLMProjector
    from e2llm.modeling_eeg_encoder import E2LLMEEGEncoder

    torch.manual_seed(0)
    eeg_config = E2LLMEEGConfig(backbone="eegpt")
    encoder = E2LLMEEGEncoder(eeg_config).eval()
    projector = E2LLMProjector(E2LLMConfig(eeg_config=eeg_config.to_dict(), text_config=QWEN3_8B)).eval()
    extractor = E2LLMFeatureExtractor(**feature_extractor_settings(eeg_config))
    eeg = 20 * np.random.default_rng(0).standard_normal((62, 4 * 200))
    features = extractor(eeg, sampling_rate=200, channel_names=list(SEED_CHANNELS), units="uV", return_tensors="pt")
    eeg_inputs = {k: features[k] for k in ("eeg_values", "eeg_channel_ids", "eeg_channel_mask")}
    layers = AutoModel.from_config(AutoConfig.for_model(**{**QWEN3_8B, "num_hidden_layers": args.layers})).eval()
    lm_head = torch.nn.Linear(QWEN3_8B["hidden_size"], QWEN3_8B["vocab_size"], bias=False)
    input_ids = torch.randint(0, QWEN3_8B["vocab_size"], (1, args.prompt_tokens))

    with torch.inference_mode():
        def encode():
            projector(encoder(**eeg_inputs).pooler_output)

        def decoder_layers():
            hidden = layers(input_ids=input_ids, use_cache=True).last_hidden_state
            return hidden

        def last_token_head():
            lm_head(torch.randn(1, 1, QWEN3_8B["hidden_size"]))

        eeg_s = median_seconds(encode, args.repeats)
        layers_s = median_seconds(decoder_layers, args.repeats)
        head_s = median_seconds(last_token_head, args.repeats)
    prefill_s = layers_s / args.layers * QWEN3_8B["num_hidden_layers"] + head_s
    return {
        "benchmark": "EEGPT encoder + projector share of a Qwen3-8B-shaped prefill (random weights, float32, CPU)",
        "eeg_window": "one 4-s window, 60 of SEED's 62 channels (CB1/CB2 are not in EEGPT's table), 256 Hz",
        "eeg_encoder_parameters": sum(p.numel() for p in encoder.parameters()),
        "projector_parameters": sum(p.numel() for p in projector.parameters()),
        "prompt_tokens": args.prompt_tokens,
        "decoder_layers_timed": args.layers,
        "decoder_layer_seconds": round(layers_s / args.layers, 4),
        "last_token_lm_head_seconds": round(head_s, 4),
        "prefill_seconds_scaled_to_36_layers": round(prefill_s, 3),
        "encoder_projector_seconds": round(eeg_s, 4),
        "encoder_projector_share": round(eeg_s / (eeg_s + prefill_s), 4),
        "note": f"decoder time measured on {args.layers} Qwen3-8B-shaped layers and scaled to 36 (same shapes per "
                "layer); the embedding lookup is included in the timed layers' call",
        "torch_threads": torch.get_num_threads(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("vs-braindecode", "prefill"))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--batch", type=int, default=4, help="vs-braindecode: windows per forward")
    parser.add_argument("--layers", type=int, default=2, help="prefill: Qwen3-8B decoder layers actually built")
    parser.add_argument("--prompt-tokens", type=int, default=128, help="prefill: prompt length (EEG tokens included)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(json.dumps(vs_braindecode(args) if args.what == "vs-braindecode" else prefill(args), indent=2))


if __name__ == "__main__":
    main()
