"""Re-run stage 3's calibration and the evaluation on the stage-3 models of an earlier `e2llm quickstart` (or
`bench_explanations.py`) output, without training again: for a change that touches only the choices stage 3 makes
on validation windows after training (label temperatures, source of the scores, guidance weight, whether the head
decides) or the evaluation.

    .venv/bin/python bench/recalibrate_runs.py --from outputs/issue26-s3/harder --output-dir outputs/issue26-rc/harder \
        --data outputs/issue26-s3/harder-data/prepared --seeds 0 1 2 --protocol subject

Each run folder's ``init``, ``stage1``, ``stage2`` and ``stage3`` are copied from `--from`; the stage-3 merged model is
calibrated again by the current code (`e2llm.training.stage3.calibrate_saved_model`, with the run's own stage-3
command line) and saved with it, then evaluated as the quickstart evaluates (`evaluate_run`). The result equals a
fresh run only where training is deterministic (on one machine it is, to the bit: `--check-against` compares the
re-calibrated config of a run trained afresh by the current code). Writes OUTPUT/report.json and report.md, and
prints the issue-26 table (`bench_explanations.report_lines`).
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import sys
import time
from pathlib import Path

STAGE_FOLDERS = ("init", "stage1", "stage2", "stage3")


def recalibrate(folder: Path, stage3_argv: list[str]) -> dict:
    """Calibrate `folder`'s stage-3 merged model again (its stage-3 command line `stage3_argv`) and save it there."""
    from e2llm.training.model_loading import load_model
    from e2llm.training.saving import MERGED_DIR
    from e2llm.training.stage3 import calibrate_saved_model
    from e2llm.training.stage_data import load_stage_data
    from e2llm.training.train import parse_stage_args

    script_args, training_args, _ = parse_stage_args("stage3", stage3_argv)
    merged = folder / "stage3" / MERGED_DIR
    model, processor = load_model(str(merged), device="cpu")
    written = {"model": model, "merged": merged}
    record = calibrate_saved_model(script_args, training_args, written, processor, load_stage_data(script_args))
    model.save_pretrained(merged)  # the current code's files with the new config
    processor.save_pretrained(merged)
    return record


def main(argv=None) -> int:
    from e2llm.processing.dataset_io import load_prepared
    from e2llm.training.quickstart import (
        CONFIGS,
        QuickstartRun,
        QuickstartSettings,
        _specs,
        _write_reports,
        run_commands,
    )
    from e2llm.training.quickstart_evaluation import evaluate_run

    sys.path.insert(0, str(Path(__file__).parent))
    from bench_explanations import report_lines, write_table

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--from", dest="source", type=Path, required=True, help="an earlier quickstart output folder")
    parser.add_argument("--output-dir", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True, help="the prepared folder those runs trained on")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--protocol", default="subject", choices=("trial", "subject", "both"))
    parser.add_argument("--check-against", type=Path, help="a run folder trained afresh by the current code: its "
                        "final/config.json must equal the re-calibrated one of the same run")
    args = parser.parse_args(argv)
    if args.output_dir.resolve() == args.source.resolve():
        raise SystemExit("--output-dir must differ from --from: the earlier runs are kept as they are")
    started = time.perf_counter()
    command = shlex.join(["python", "bench/recalibrate_runs.py", *(argv if argv is not None else sys.argv[1:])])
    plan = QuickstartRun(args.output_dir, args.data, tuple(args.seeds), args.protocol,
                         settings=QuickstartSettings.from_file(CONFIGS / "quickstart.yaml"))
    dataset = load_prepared(args.data)
    labels = list(dataset.features["emotion"].names)
    specs = _specs(dataset, args.protocol, ["--config", str(CONFIGS / "stage3.yaml")])
    reports, runs = {}, []
    for seed in args.seeds:
        for spec in specs:
            name = f"{spec.kind}-fold{spec.fold}-seed{seed}"
            old, folder = args.source / "runs" / name, args.output_dir / "runs" / name
            if not (old / "stage3").is_dir():
                raise SystemExit(f"{old} has no stage3 folder: pass the output of a finished run with these seeds")
            for stage in STAGE_FOLDERS:
                shutil.rmtree(folder / stage, ignore_errors=True)
                shutil.copytree(old / stage, folder / stage)
            commands = run_commands(folder, Path(args.data), spec, seed, labels, "patch", {})
            timings = {}
            t0 = time.perf_counter()
            recalibrate(folder, commands["stage3"][2:])
            timings["calibration"] = round(time.perf_counter() - t0, 1)
            t0 = time.perf_counter()
            report = evaluate_run(dataset, spec, seed, folder, plan.settings, command)
            timings["evaluation"] = round(time.perf_counter() - t0, 1)
            print(f"recalibrate: {name} {timings}", flush=True)
            runs.append({"protocol": spec.kind, "fold": spec.fold, "seed": seed, "folder": str(folder),
                         "timings_seconds": timings, "evaluation_seconds": report["runs"][0].get("seconds", {}),
                         "alignment": report.get("alignment"), "recalibrated_from": str(old)})
            reports.setdefault(spec.kind, []).append(report)
            if args.check_against is not None and args.check_against.name == name:
                fresh = json.loads((args.check_against / "final" / "config.json").read_text())
                again = json.loads((folder / "final" / "config.json").read_text())
                same = {k: fresh.get(k) == again.get(k) for k in set(fresh) | set(again)}
                print(json.dumps({"check_against": str(args.check_against), "config_equal": all(same.values()),
                                  "differing": sorted(k for k, v in same.items() if not v)}), flush=True)
    report = _write_reports(plan, reports, runs, 0.0, time.perf_counter() - started)
    lines = [f"# Re-calibrated from {args.source} (synthetic data)", "", *report_lines(args.output_dir.name, report)]
    write_table(lines, args.output_dir)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
