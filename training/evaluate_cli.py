"""`e2llm evaluate`: score models on held-out trials or subjects, next to baselines trained on the same split.

    e2llm evaluate --model runs/seed0/merged runs/seed1/merged runs/seed2/merged --data data/seed7 \\
        --split trial subject --tasks emotion multitask scenario --baselines de_logreg eegnet_v4 --output-dir runs/eval

``--split`` takes one or more protocols (``trial``: whole trials held out per subject; ``subject``: leave one
subject out, subject ``--fold``; ``seed_vii``: SEED-VII's official fold ``--fold``; ``--fold all``: every fold, each
model scored on the split its provenance names, so the quickstart's run folders evaluate in one call), resolved by
`e2llm.processing.splits` and reported side by side. Before any inference, the test windows are checked
against each model's provenance (``e2llm_provenance.json``, written by every training stage): a model is never
scored on trials it trained or validated on, and a folder without provenance is evaluated with a warning in the
report. Several ``--model`` folders (one per training seed) give mean ± std over training seeds; every accuracy
carries a 95% bootstrap interval over held-out trials, and the model-vs-baseline differences are paired bootstrap
comparisons on the same windows. Every evaluation also answers each test question with another test window's EEG
(a different class) and reports accuracy and confidence on those mismatched inputs, plus selective-prediction
accuracy at 50/80/100% coverage. See `e2llm.training.evaluation` for the pieces.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from e2llm.output_lock import output_lock
from e2llm.processing.dataset_io import load_prepared
from e2llm.processing.splits import SPLIT_ALIASES, SPLITS, SplitSpec, n_folds, resolve_split
from e2llm.training.evaluation.baselines import BASELINES
from e2llm.training.evaluation.evaluate import EvalOptions, evaluate_model
from e2llm.training.evaluation.report import _clean, _json_default, format_metric, write_report
from e2llm.training.evaluation.runner import EVAL_TASKS
from e2llm.training.evaluation.summary import summarize
from e2llm.training.model_loading import load_model
from e2llm.training.provenance import ProvenanceOverlapError, trained_split
from e2llm.training.sharding import inference_device, is_main_process


class _Renamed(argparse.Action):
    def __call__(self, parser, namespace, values, option_string=None):
        parser.error("--seeds was renamed: training seeds are separate models (pass one --model folder per training "
                     "seed: mean ± std over them); the prompt-template draw is --prompt-seed")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", nargs="+", required=True, metavar="DIR",
                        help="model folder(s) or Hub id(s); one per training seed gives mean ± std over seeds")
    parser.add_argument("--data", required=True, metavar="DIR", help="a prepared dataset folder (`e2llm prepare`)")
    parser.add_argument("--split", nargs="+", default=["trial"], choices=[s for s in SPLITS if s != "none"]
                        + list(SPLIT_ALIASES), help="protocol(s), reported side by side: trial (held-out trials per "
                        "subject), subject (leave one subject out), seed_vii (official folds)")
    parser.add_argument("--fold", type=_fold, default=0,
                        help="fold (seed_vii) or held-out subject index (subject); `all`: every fold, each --model "
                             "scored on the fold its provenance names (one model per fold and training seed, e.g. "
                             "`--model runs/subject-fold*-seed*/final`), mean ± std over training seeds")
    parser.add_argument("--test-size", type=float, default=0.25, help="share of each subject's trials tested (trial)")
    parser.add_argument("--split-seed", type=int, default=0, help="seed of the trial split (same as in training)")
    parser.add_argument("--tasks", nargs="+", default=["emotion"], choices=EVAL_TASKS)
    parser.add_argument("--baselines", nargs="*", default=["de_logreg"], choices=list(BASELINES),
                        help="baselines trained on the same split (eegnet_v4 is slower)")
    parser.add_argument("--eegnet-epochs", type=int, default=30)
    parser.add_argument("--prompt-seed", type=int, default=0,
                        help="seed of the prompt-template draw per window (not a training seed; never gives ±)")
    parser.add_argument("--seeds", nargs="+", action=_Renamed, help=argparse.SUPPRESS)
    parser.add_argument("--no-mismatched-eeg", action="store_true",
                        help="skip the checks that give the model mismatched or perturbed inputs (another window's "
                             "EEG, conflict tests, ERASER, abstention)")
    parser.add_argument("--self-consistency", type=int, default=0, metavar="N", help="sampled answers per window")
    parser.add_argument("--temperature", type=float, default=1.0, help="sampling temperature for self-consistency")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--max-test-windows", type=int, default=None, help="evenly subsample the test windows")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    parser.add_argument("--trust-remote-code", action="store_true")
    parser.add_argument("--output-dir", required=True, metavar="DIR")


def _fold(text: str):
    if text == "all":
        return "all"
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a fold number or `all`, got {text!r}") from None


def command_line(args: argparse.Namespace) -> str:
    """The `e2llm evaluate` command that reproduces `args`."""
    parts = ["e2llm", "evaluate", "--model", *args.model, "--data", str(args.data), "--split", *args.split]
    if any(SPLIT_ALIASES.get(s, s) != "trial" for s in args.split):
        parts += ["--fold", str(args.fold)]
    parts += ["--test-size", f"{args.test_size:g}", "--split-seed", str(args.split_seed), "--tasks", *args.tasks,
              "--baselines", *args.baselines, "--prompt-seed", str(args.prompt_seed)]
    if args.max_test_windows is not None:
        parts += ["--max-test-windows", str(args.max_test_windows)]
    if args.self_consistency:
        parts += ["--self-consistency", str(args.self_consistency)]
    return shlex.join(parts + ["--output-dir", str(args.output_dir)])


def _options(args, model_index: int) -> EvalOptions:
    return EvalOptions(tasks=args.tasks, baselines=args.baselines, prompt_seed=args.prompt_seed,
                       self_consistency_samples=args.self_consistency, temperature=args.temperature,
                       mismatched_eeg=not args.no_mismatched_eeg, batch_size=args.batch_size,
                       max_new_tokens=args.max_new_tokens, max_test_windows=args.max_test_windows,
                       eegnet_epochs=args.eegnet_epochs)


def evaluate_protocol(models, dataset, spec: SplitSpec, args, names=None) -> dict:
    """Every model on one split; one summarized report (runs of model i are replicate i)."""
    indices = resolve_split(dataset, spec)
    reports = []
    for i, (model, processor) in enumerate(models):
        report = evaluate_model(model, processor, dataset, options=_options(args, i), indices=indices)
        for run in report["runs"]:
            run["replicate"] = i
        reports.append(report)
    return summarize(reports, [str(p) for p in (names if names is not None else args.model)])


def evaluate_all_folds(models, trained, dataset, kind: str, args) -> dict:
    """Protocol `kind` over every fold: each model scored on the fold it was trained for (`trained`: its
    `trained_split`), its runs pooled per training seed (a replicate = one seed's folds), summarized as one protocol."""
    by_fold, names = {}, []
    for path, (model, processor), (model_kind, fold, seed) in zip(args.model, models, trained):
        if model_kind == kind:
            by_fold.setdefault(fold, []).append((path, seed, model, processor))
    folds = n_folds(dataset, kind)
    missing = [k for k in range(folds) if k not in by_fold]
    if missing:
        raise ValueError(f"--split {kind} --fold all: no --model was trained on fold(s) {missing} of {folds} "
                         f"(their provenance names folds {sorted(by_fold)}); pass one model per fold and seed")
    reports = []
    for fold in range(folds):
        spec = SplitSpec(kind=kind, fold=fold, test_size=args.test_size, seed=args.split_seed)
        indices = resolve_split(dataset, spec)
        for i, (path, seed, model, processor) in enumerate(by_fold[fold]):
            report = evaluate_model(model, processor, dataset, options=_options(args, i), indices=indices)
            for run in report["runs"]:
                run["replicate"] = seed
            reports.append(report)
            names.append(str(path))
    return summarize(reports, names)


def run(args: argparse.Namespace) -> int:
    with output_lock(args.output_dir):  # one writer per folder: a second evaluation into it is refused
        return _evaluate(args)


def _evaluate(args: argparse.Namespace) -> int:
    # --fold all: which split each model was trained on, read once and before any model is loaded
    trained = [trained_split(path) for path in args.model] if args.fold == "all" else None
    dataset = load_prepared(args.data)
    models = [load_model(path, inference_device(args.device), args.trust_remote_code) for path in args.model]
    kinds = list(dict.fromkeys(SPLIT_ALIASES.get(s, s) for s in args.split))
    protocols = {}
    try:
        for kind in kinds:
            if trained is not None and kind != "trial":
                protocols[kind] = evaluate_all_folds(models, trained, dataset, kind, args)
                continue
            # with --fold all, the trial protocol takes the models trained on a trial split
            chosen = [(m, path) for i, (m, path) in enumerate(zip(models, args.model))
                      if trained is None or trained[i][0] == kind]
            if not chosen:
                raise ValueError(f"--split {kind} --fold all: no --model was trained on a {kind} split")
            spec = SplitSpec(kind=kind, fold=args.fold if kind != "trial" else 0, test_size=args.test_size,
                             seed=args.split_seed)
            protocols[kind] = evaluate_protocol([m for m, _ in chosen], dataset, spec, args,
                                                names=[path for _, path in chosen])
    except ProvenanceOverlapError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if not is_main_process():  # under accelerate launch every process holds the same report; one writes it
        return 0
    command = command_line(args)
    output = Path(args.output_dir)
    for kind, report in protocols.items():
        report["command"] = command
        report["files"] = write_report(report, output if len(protocols) == 1 else output / kind)
    if len(protocols) > 1:
        _write_side_by_side(protocols, output, command)
    for kind, report in protocols.items():
        print(kind, json.dumps({m: {k: round(v["mean"], 4) for k, v in s.items() if k in ("accuracy", "parse_rate")}
                                for m, s in report["summary"].items()}, indent=2))
    print(f"report written to {output / 'report.md'}")
    return 0


def _write_side_by_side(protocols: dict, output: Path, command: str) -> None:
    """``report.json`` / ``report.md`` at the top of `output`: the protocols' summaries next to each other."""
    lines = [f"# Evaluation, {len(protocols)} protocols", "", f"Reproduce: `{command}`", "",
             "| method | " + " | ".join(f"{k} accuracy" for k in protocols) + " |", "|---" * (len(protocols) + 1) + "|"]
    methods = list(dict.fromkeys(m for r in protocols.values() for m in r["summary"]))
    for method in methods:
        lines.append(f"| {method} | " + " | ".join(format_metric(r["summary"][method]["accuracy"])
                                                    if method in r["summary"] else "" for r in protocols.values()) + " |")
    lines += ["", "Per-protocol reports: " + ", ".join(f"[{k}]({k}/report.md)" for k in protocols), ""]
    output.mkdir(parents=True, exist_ok=True)
    (output / "report.md").write_text("\n".join(lines))
    summary = {"command": command, "protocols": {k: {"summary": r["summary"], "paired": r["paired"],
                                                     "explanations": r.get("explanations"),
                                                     "synthetic": r.get("synthetic"),
                                                     "dataset": r["dataset"], "split": r["split"]}
                                                 for k, r in protocols.items()}}
    (output / "report.json").write_text(json.dumps(_clean(summary), indent=2, default=_json_default) + "\n")


__all__ = ["add_arguments", "command_line", "evaluate_all_folds", "evaluate_protocol", "run"]
