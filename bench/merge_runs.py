"""Pool the outputs of `e2llm quickstart` (or `bench_explanations.py`) commands that trained other seeds of the same
recipe on the same data, as one command with all their seeds would have pooled them: e.g. seed 0 in one command and
seeds 1 and 2 in another, or seeds run on different machines.

    .venv/bin/python bench/merge_runs.py outputs/issue26-h5/harder outputs/issue26-h5s12/harder \
        --output-dir outputs/issue26-h5-3seeds/harder

Every input's ``report.json`` must come from the same data (the dataset fingerprint each stage recorded), the same
recipe (each step's command line but for its run folder, data folder and ``--seed``; the quickstart settings), the
same protocols with the same test windows in every fold, and other training seeds. The runs are pooled again by
`summarize_runs` (mean ± std over training seeds, intervals over held-out trials, paired comparisons, explanation
checks). Writes OUTPUT/report.json and report.md (report-<protocol>/ for each of several protocols) and prints the
issue-26 table (`bench_explanations.report_lines`), also written to OUTPUT/issue26.md. The run folders stay where
they are; the merged report names them.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

# each step's arguments that name a run's own folders or its seed: they differ between runs of one recipe
_RUN_ARGUMENTS = ("--output-dir", "--output_dir", "--model_name_or_path", "--encoder_name_or_path", "--dataset_path",
                  "--seed")


def recipe(commands: dict[str, str]) -> dict[str, list[str]]:
    """A run's step command lines without the arguments that name its folders or its seed."""
    kept = {}
    for step, line in commands.items():
        argv, out = shlex.split(line), []
        skip = False
        for token in argv:
            if skip:
                skip = False
            elif token in _RUN_ARGUMENTS:
                skip = True
            else:
                out.append(token)
        kept[step] = out
    return kept


def _fingerprints(protocol: dict) -> set[str]:
    per_model = (protocol.get("provenance") or {}).get("per_model") or [protocol.get("provenance") or {}]
    return {stage.get("fingerprint") for p in per_model for stage in (p or {}).get("stages", [])}


def _test_windows(protocol: dict) -> dict[int, list]:
    return {run.get("fold", 0): run["windows"]["keys"] for run in protocol["runs"]}


def _recipes(report: dict) -> set[str]:
    return {json.dumps(recipe(run.get("commands") or {}), sort_keys=True) for run in report["quickstart"]["runs"]}


def check_compatible(reports: list[dict], sources: list[Path]) -> None:
    """Raise `SystemExit` naming the first difference that makes `reports` not seeds of one command."""
    first, name = reports[0], sources[0]
    for report, source in zip(reports[1:], sources[1:]):
        if set(report["protocols"]) != set(first["protocols"]):
            raise SystemExit(f"{source} ran the protocols {sorted(report['protocols'])}, {name} "
                             f"{sorted(first['protocols'])}: merge outputs of the same --protocol")
        if report["quickstart"]["settings"] != first["quickstart"]["settings"]:
            raise SystemExit(f"{source} and {name} ran with other quickstart settings: merge outputs of one recipe")
        if report["label_names"] != first["label_names"]:
            raise SystemExit(f"{source} and {name} have other label names: merge outputs of the same data")
        for kind, protocol in report["protocols"].items():
            theirs, ours = _fingerprints(protocol), _fingerprints(first["protocols"][kind])
            if not theirs or not ours or None in theirs | ours:
                raise SystemExit(f"{source if not theirs or None in theirs else name} records no dataset fingerprint "
                                 "for every stage, so its data cannot be checked: merge quickstart outputs, which "
                                 "record one")
            if theirs != ours:
                raise SystemExit(f"{source} trained on data with fingerprint {sorted(map(str, theirs))}, {name} on "
                                 f"{sorted(map(str, ours))}: merge outputs of the same prepared data")
            if _test_windows(protocol) != _test_windows(first["protocols"][kind]):
                raise SystemExit(f"{source} and {name} tested other windows in the {kind} protocol: merge outputs "
                                 "of the same split")
        if _recipes(report) != _recipes(first):
            raise SystemExit(f"{source} and {name} ran other step command lines (besides folders and seeds): merge "
                             "outputs of one recipe")
    seen = {}
    for report, source in zip(reports, sources):
        for run in report["quickstart"]["runs"]:
            key = (run["protocol"], run["fold"], run["seed"])
            if key in seen:
                raise SystemExit(f"{source} and {seen[key]} both hold the {key[0]} protocol's fold {key[1]} with "
                                 f"training seed {key[2]}: merge outputs of different seeds")
            seen[key] = source


def merge(reports: list[dict], sources: list[Path], command: str) -> dict:
    """One quickstart report (as `run_quickstart` writes it) from `reports` of other training seeds."""
    from e2llm.training.evaluation.summary import summarize_runs

    check_compatible(reports, sources)
    first = reports[0]
    protocols = {}
    for kind, protocol in first["protocols"].items():
        parts = [r["protocols"][kind] for r in reports]
        runs = sorted((run for p in parts for run in p["runs"]), key=lambda run: (run["seed"], run.get("fold", 0)))
        pooled = summarize_runs(runs, protocol["label_names"], f"{protocol.get('model', 'e2llm')}/")
        per_model = [m for p in parts for m in (p.get("provenance") or {}).get("per_model", [p.get("provenance")])]
        status = "missing" if any((m or {}).get("status") == "missing" for m in per_model) else "recorded"
        protocols[kind] = {**protocol, "runs": runs, "seconds": sum(p.get("seconds", 0.0) for p in parts),
                           "provenance": {"per_model": per_model, "status": status}, **pooled, "command": command}
        protocols[kind].pop("files", None)
    seeds = sorted({seed for r in reports for seed in r["quickstart"]["seeds"]})
    runs = sorted((run for r in reports for run in r["quickstart"]["runs"]),
                  key=lambda run: (run["seed"], run["protocol"], run["fold"]))
    quickstart = {**first["quickstart"], "seeds": seeds, "runs": runs,
                  "total_seconds": round(sum(r["quickstart"]["total_seconds"] for r in reports), 1),
                  "merged_from": [{"report": str(source / "report.json"), "command": r["command"],
                                   "seeds": r["quickstart"]["seeds"]} for r, source in zip(reports, sources)]}
    return {**next(iter(protocols.values())), "protocols": protocols, "command": command, "quickstart": quickstart}


def main(argv=None) -> int:
    sys.path.insert(0, str(Path(__file__).parent))
    from bench_explanations import report_lines, write_table

    from e2llm.training.quickstart import write_quickstart_report

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sources", type=Path, nargs="+", metavar="OUTPUT",
                        help="quickstart output folders (each with its report.json)")
    parser.add_argument("--output-dir", type=Path, required=True)
    args = parser.parse_args(argv)
    if len(args.sources) < 2:
        raise SystemExit("give at least two quickstart output folders to merge")
    missing = [str(s) for s in args.sources if not (s / "report.json").is_file()]
    if missing:
        raise SystemExit(f"no report.json in {', '.join(missing)}: pass the folders of finished quickstart runs")
    if any(args.output_dir.resolve() == s.resolve() for s in args.sources):
        raise SystemExit("--output-dir must differ from every merged folder: their reports are kept as they are")
    reports = [json.loads((s / "report.json").read_text()) for s in args.sources]
    command = shlex.join(["python", "bench/merge_runs.py", *(argv if argv is not None else sys.argv[1:])])
    report = write_quickstart_report(merge(reports, args.sources, command), args.output_dir)
    data = "synthetic data" if report.get("synthetic") else f"data: {report.get('dataset')}"
    lines = [f"# Merged: {', '.join(map(str, args.sources))} (seeds {report['quickstart']['seeds']}, {data})", "",
             *report_lines(args.output_dir.name, report)]
    write_table(lines, args.output_dir)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
