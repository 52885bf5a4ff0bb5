"""A trained model on the committed real recordings (MNE's public test data, tests/fixtures/real): what its returned
rationales state against the measured evidence, per file (prints JSON).

    python bench/bench_real_recordings.py --model outputs/quickstart/final

Per file: windows, windows answered / abstained / refused, channels used and dropped, the reference the evidence was
measured against, numbers in returned rationales that are no measured value (`e2llm.numbers_not_measured`, 0 by
construction), and the claims (`e2llm.claim_agreement`): parsed, linked to a measured item, removed for having none,
and the share whose item, direction and strength word agree with measurement. Files the pipeline refuses are listed
with the reason. Greedy generation, as `e2llm predict` does it.
"""

from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path

from transformers import pipeline

from e2llm import claim_agreement, numbers_not_measured
from e2llm.training.model_loading import load_model

REAL = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "real"
# file -> pipeline arguments a user of that recording would pass (its cap is not labelled with 10-05 names)
FILES = {
    "edf/test_edf_stim_channel.edf": {},
    "edf/chtypes_edf.edf": {},
    "bdf/multiple_annotation_chans_20s.bdf": {},
    "bdf/test_abc.bdf": {"montage": "biosemi256"},  # the montage its refusal names
    "brainvision/test.vhdr": {},
    "nihon_kohden/MB0400FU.EEG": {},
    "eeglab/test_raw_2021.set": {"channel_map": {"EEG 000": "Fz", "EEG 001": "Cz", "EEG 002": "Pz"}},
}


def file_figures(result: dict) -> dict:
    windows = result.get("windows", [result])
    refused = [w for w in windows if "refused" in w]
    abstained = [w for w in windows if "refused" not in w and w.get("abstention_reason") is not None]
    agreement = claim_agreement([result])
    return {"windows": len(windows), "answered": len(windows) - len(refused) - len(abstained),
            "abstained": len(abstained), "refused": len(refused),
            "channels_used": len(result["channels"]["used"]), "channels_dropped": len(result["channels"]["dropped"]),
            "references": sorted({(w.get("evidence") or {}).get("reference", {}).get("kind") or "none"
                                  for w in windows}),
            "numbers_not_measured": len(numbers_not_measured(result)), **agreement}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="a trained E2LLM folder (e.g. outputs/quickstart/final)")
    parser.add_argument("--max-new-tokens", type=int, default=160)
    args = parser.parse_args(argv)
    model, processor = load_model(args.model, "cpu")
    pipe = pipeline("eeg-emotion", model=model, processor=processor, device=model.device)
    files, failed, results = {}, {}, []
    for name, kwargs in FILES.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                result = pipe(str(REAL / name), max_new_tokens=args.max_new_tokens, **kwargs)
            except ValueError as error:
                failed[name] = str(error)
                continue
        files[name] = file_figures(result)
        results.append(result)
    print(json.dumps({"model": args.model, "files": files, "refused_files": failed,
                      "all": {"numbers_not_measured": sum(f["numbers_not_measured"] for f in files.values()),
                              **claim_agreement(results)}}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
