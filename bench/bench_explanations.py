"""Issue #26's figures in one command: the quickstart recipe on the quickstart's synthetic data and on the harder set
(weaker class signal, subjects that differ more: `e2llm.processing.synthetic.HARDER`), three training seeds, held-out
trials and leave-one-subject-out, every method and check in the same runs.

    .venv/bin/python bench/bench_explanations.py --output-dir runs/issue26 [--seeds 0 1 2] [--protocol both]

Writes each run's report under OUTPUT/{quickstart,harder}/ (`e2llm quickstart`'s layout) and prints, per data set and
protocol, mean ± std over training seeds (with the 95% interval over held-out trials for accuracies): balanced
accuracy of the LLM, the stage-1 head, DE + logistic regression and the network baselines; comprehensiveness and
sufficiency of the cited evidence next to random items; label consistency next to the shuffled control; the
conflict tests; ECE of the answers and of the head; abstention on non-emotion inputs and false abstention; the
stage-2 alignment gap. The table also goes to OUTPUT/issue26.md. About 18 trainings: hours on a 2-core CPU.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

DATASETS = ("quickstart", "harder")


def harder_data(folder: Path, n_subjects: int = 2):
    """The harder synthetic set (`n_subjects` subjects) in SEED-VII's layout under `folder`, prepared (as the
    quickstart prepares its own). With 3 or more subjects a leave-one-subject-out fold validates on a whole training
    subject (`e2llm.processing.splits`), so its checks and calibration see a subject the model did not train on."""
    from e2llm.processing.prepare import prepare_dataset
    from e2llm.processing.synthetic import harder_config, write_synthetic_seed_vii

    if (folder / "prepared").exists():
        found = json.loads((folder / "prepared" / "summary.json").read_text())["n_subjects"]
        if found != n_subjects:
            raise SystemExit(f"{folder / 'prepared'} holds the harder set with {found} subjects, not {n_subjects}: "
                             "pass another --output-dir, or remove that folder")
        return folder / "prepared"
    raw = write_synthetic_seed_vii(folder / "raw", n_subjects=n_subjects, trial_seconds=20.0, seed=0,
                                   config=harder_config())
    prepare_dataset("seed-vii", raw, output_dir=folder / "prepared", overwrite=True, progress=False)
    return folder / "prepared"


def _cell(stats: dict | None, digits: int = 3) -> str:
    from e2llm.training.evaluation.report import format_metric

    return format_metric(stats, digits) if stats and stats.get("n") else "n/a"


def _get(tree, *path):
    for key in path:
        tree = (tree or {}).get(key)
    return tree


def protocol_lines(name: str, kind: str, protocol: dict, gaps: list[float]) -> list[str]:
    summary, checks = protocol["summary"], protocol.get("explanations") or {}
    lines = [f"### {name}, {kind}", "", "| what | value |", "|---|---|"]
    for method in summary:
        lines.append(f"| balanced accuracy, {method} | {_cell(summary[method].get('balanced_accuracy'))} |")
    for name_, result in (protocol.get("paired") or {}).items():
        lo, hi = result["ci"]
        lines.append(f"| paired {name_} | {result['difference']:+.3f} [{lo:+.3f}, {hi:+.3f}], p = "
                     f"{result['p_value']:.3f} |")
    rows = [("label consistency (shuffled)", ("rationale", "label_consistency"),
             ("rationale", "shuffled_label_consistency")),
            ("comprehensiveness (random items)", ("eraser", "comprehensiveness"), ("eraser", "random_comprehensiveness")),
            ("sufficiency (random items)", ("eraser", "sufficiency"), ("eraser", "random_sufficiency")),
            ("answer changed: EEG tokens swapped (emotion token swapped)", ("conflicts", "eeg_tokens", "changed_answer"),
             ("conflicts", "emotion_token", "changed_answer")),
            ("ECE of the returned scores (emotion head at its shipped temperature)", ("calibration", "answer", "ece"),
             ("calibration", "answer_head", "ece")),
            ("ECE of the language model's scores at its shipped temperature (head at temperature 1)",
             ("calibration", "answer_language_model", "ece"), ("calibration", "head", "ece")),
            ("abstention on non-emotion inputs (false abstention)", ("abstention", "mean_abstention_non_emotion"),
             ("abstention", "false_abstention"))]
    for title, first, second in rows:
        lines.append(f"| {title} | {_cell(_get(checks, *first))} ({_cell(_get(checks, *second))}) |")
    if gaps:
        lines.append(f"| stage-2 gap, nats per description (mean ± std over runs) | {np.mean(gaps):+.2f} ± "
                     f"{np.std(gaps, ddof=1) if len(gaps) > 1 else 0:.2f} |")
    return lines + [""]


def report_lines(name: str, report: dict) -> list[str]:
    """`protocol_lines` of each protocol of a quickstart `report`, with its runs' stage-2 gaps."""
    lines = []
    for kind, protocol in report.get("protocols", {"trial": report}).items():
        gaps = [r["alignment"]["description_gap_shuffled_minus_real"] for r in report["quickstart"]["runs"]
                if r["protocol"] == kind and r.get("alignment")]
        lines += protocol_lines(name, kind, protocol, gaps)
    return lines


def write_table(lines: list[str], output_dir: Path) -> None:
    """Write the table's `lines` to OUTPUT/issue26.md and print them."""
    text = "\n".join(lines)
    (output_dir / "issue26.md").write_text(text + "\n")
    print(text)


def main(argv=None) -> int:
    from e2llm.training.quickstart import QuickstartRun, run_quickstart

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output-dir", type=Path, default=Path("runs/issue26"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--protocol", default="both", choices=("trial", "subject", "both"))
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=DATASETS)
    parser.add_argument("--harder-subjects", type=int, default=2,
                        help="subjects of the harder set (3 or more: leave-one-subject-out validates on a subject)")
    parser.add_argument("--configs", type=Path, default=None, metavar="DIR",
                        help="the recipe folder (as `e2llm quickstart --configs`; default: the shipped one), e.g. a "
                             "copy whose stage{1,2,3}.yaml set validation_size 0.5 so that a 5-subject set validates "
                             "on 2 subjects per fold")
    args = parser.parse_args(argv)
    lines = ["# Issue #26 figures (synthetic data)", "",
             f"Seeds {args.seeds}, protocol {args.protocol}, harder set: {args.harder_subjects} subjects, "
             f"recipe {args.configs or 'shipped'}.", ""]
    for name in args.datasets:
        data = None if name == "quickstart" else harder_data(args.output_dir / "harder-data", args.harder_subjects)
        recipe = {} if args.configs is None else {"configs": args.configs}
        report = run_quickstart(QuickstartRun(args.output_dir / name, data, tuple(args.seeds), args.protocol, **recipe))
        lines += report_lines(name, report)
    write_table(lines, args.output_dir)
    print(json.dumps({"written": str(args.output_dir / "issue26.md")}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
