"""`e2llm quickstart`: the whole method end to end on a laptop CPU (or a GPU when there is one), offline.

The recipe is a set of shipped configs, `training/configs/quickstart/`: the model (``eeg_config.yaml``, for
`e2llm init --tiny`), the three stages (``stage1.yaml``, ``stage2.yaml``, ``stage3.yaml``, for `e2llm train`) and the
data and evaluation (``quickstart.yaml``). The quickstart writes synthetic EEG in SEED-VII's on-disk layout (or takes
a folder from `e2llm prepare` with ``--data``), prepares it (marked synthetic), and for each protocol, fold and
training seed runs exactly what these commands run (``e2llm train`` on the same configs reproduces it; the report
lists each run's commands):

    e2llm init --tiny --eeg-config training/configs/quickstart/eeg_config.yaml --seed 0 --output-dir RUN/init
    e2llm train stage1 --config training/configs/quickstart/stage1.yaml --model_name_or_path RUN/init ...
    e2llm train stage2 --config training/configs/quickstart/stage2.yaml ... ; e2llm train stage3 ...

then evaluates the merged model (``RUN/final``) on the held-out trials (``trial``) or held-out subject (``subject``,
every fold) next to the stage-1 head and the baselines trained on the same split, and prints the results and the
time each part took. Writes ``OUTPUT/report.json`` / ``report.md`` and, per run, ``init``, ``stage1``, ``stage2``,
``stage3`` and ``final`` (with its model card); one run straight into ``OUTPUT``, several into
``OUTPUT/runs/<protocol>-fold<k>-seed<s>``.

    e2llm quickstart                                   # synthetic data, protocol trial, training seed 0
    e2llm quickstart --full                            # the README's run: seeds 0 1 2 x (trial split + 2 LOSO folds)
    e2llm quickstart --on-validation --seeds 0 1 2     # recipe work: scored on validation trials, never the test ones
    e2llm quickstart --data runs/my_prepared --output-dir runs/qs
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import time
import warnings
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import datasets
import torch
import transformers
import yaml

from e2llm.processing.dataset_io import load_prepared, save_prepared
from e2llm.processing.instructions import AFFECT, SCENARIOS
from e2llm.processing.prepare import prepare_dataset
from e2llm.processing.splits import SplitSpec, n_folds, resolve_split
from e2llm.processing.synthetic import write_synthetic_seed_vii
from e2llm.training.evaluation.report import _clean, write_report
from e2llm.training.evaluation.summary import summarize
from e2llm.training.init_model import init_model, read_eeg_config
from e2llm.training.language_models import CONFIG_DIR
from e2llm.training.quickstart_evaluation import evaluate_run
from e2llm.training.quickstart_report import results_table, timing_table
from e2llm.training.train import parse_stage_args, run_stage

CONFIGS = CONFIG_DIR / "quickstart"
PROTOCOLS = ("trial", "subject", "both")
STAGES = ("stage1", "stage2", "stage3")
# What decides the CPU's speed besides the load, printed with the time table: OpenMP threads that spin long while they
# wait (GNU OpenMP's default) make a CPU shared with other jobs several times slower (`make quickstart` shortens it).
THREAD_SETTINGS = ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT")
QUICKSTART_EEG_CONFIG = read_eeg_config(CONFIGS / "eeg_config.yaml")


@dataclass
class QuickstartSettings:
    """The quickstart's data and evaluation (``training/configs/quickstart/quickstart.yaml``)."""

    n_subjects: int
    trial_seconds: float
    data_seed: int
    tasks: tuple[str, ...]
    baselines: tuple[str, ...]
    eegnet_epochs: int
    prompt_seed: int
    batch_size: int
    max_new_tokens: int
    max_test_windows: int | None = None
    fbcnet_epochs: int = 20

    @classmethod
    def from_file(cls, path: Path = CONFIGS / "quickstart.yaml", **overrides) -> QuickstartSettings:
        content = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        data = {f"data_{k}" if k == "seed" else k: v for k, v in content["data"].items()}
        settings = {**data, **content["evaluation"], **overrides}
        unknown = set(settings) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"{path}: unknown quickstart settings {sorted(unknown)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in settings.items()})


def make_synthetic_data(output_dir: Path, settings: QuickstartSettings):
    """Write synthetic EEG in SEED-VII's layout under ``output_dir/raw`` and prepare it into ``output_dir/prepared``
    (named ``synthetic`` in its metadata, so no report or card calls it SEED-VII)."""
    raw = write_synthetic_seed_vii(output_dir / "raw", n_subjects=settings.n_subjects,
                                   trial_seconds=settings.trial_seconds, seed=settings.data_seed)
    prepare_dataset("seed-vii", raw, output_dir=output_dir / "prepared", overwrite=True, progress=False)
    return output_dir / "prepared"


def validation_data(prepared: Path, output_dir: Path, split_seed: int, test_size: float) -> Path:
    """``output_dir/prepared-validation``: the training side of the trial split of `prepared` (its test trials
    left out), so a run on it is scored on validation trials carved from the training trials."""
    dataset = load_prepared(prepared)
    training_side = resolve_split(dataset, SplitSpec("trial", test_size=test_size, seed=split_seed)).training_side
    return save_prepared(dataset.select(training_side), output_dir / "prepared-validation", overwrite=True)


def supported_tasks(tasks, label_names, column_names) -> tuple[str, ...]:
    """The tasks of `tasks` a dataset's labels allow: multitask needs known affect or valence/arousal ratings,
    scenario needs labels with a known scenario; the basic emotion task always works."""
    known = {name.lower() for name in label_names}
    allowed = {"emotion", "describe"}
    if known <= set(AFFECT) or {"valence", "arousal"} <= set(column_names):
        allowed.add("multitask")
    if known <= set(SCENARIOS):
        allowed.add("scenario")
    return tuple(task for task in tasks if task in allowed)


def encoder_overrides(stage: str, eeg_encoder: str) -> list[str]:
    """What a foundation encoder (`--eeg-encoder eegpt|cbramod|labram`) changes in the shipped stages: no linear
    probe (it has no band-power readout), no evidence in the prompt (its feature extractor re-references), no
    emotion-token dropout and no label guidance by the head (it has no emotion token)."""
    if eeg_encoder == "patch":
        return []
    return {"stage1": ["--linear_probe_epochs", "0"],
            "stage3": ["--evidence_in_prompt", "false", "--evidence_strongest", "None",
                       "--emotion_token_dropout", "0", "--label_guidance_weights", "0"]}.get(stage, [])


def run_commands(folder: Path, prepared: Path, spec: SplitSpec, seed: int, labels, eeg_encoder: str,
                 overrides: dict, configs: Path = CONFIGS) -> dict[str, list[str]]:
    """The command line (after ``e2llm``) of each step of one run: ``init`` and the three stages (`configs`: the
    folder of the recipe's configs)."""
    init = ["init", "--tiny", "--labels", *labels, "--seed", str(seed), "--output-dir", str(folder / "init")]
    init += ["--eeg-config", str(configs / "eeg_config.yaml")] if eeg_encoder == "patch" else ["--eeg-encoder", eeg_encoder]
    starts = {"stage1": ["--model_name_or_path", str(folder / "init")],
              "stage2": ["--model_name_or_path", str(folder / "init"), "--encoder_name_or_path", str(folder / "stage1")],
              "stage3": ["--model_name_or_path", str(folder / "stage2")]}
    split = [] if spec.kind == "trial" else ["--split", spec.kind, "--fold", str(spec.fold)]
    commands = {"init": init}
    for stage in STAGES:
        commands[stage] = ["train", stage, "--config", str(configs / f"{stage}.yaml"), *starts[stage],
                           "--dataset_path", str(prepared), "--output_dir", str(folder / stage), "--seed", str(seed),
                           *split, *encoder_overrides(stage, eeg_encoder), *overrides.get(stage, ())]
    return commands


def train_run(commands: dict[str, list[str]], folder: Path, labels, seed: int, eeg_encoder: str,
              timings: dict) -> None:
    """Run one run's commands: `init_model` as ``e2llm init`` does, then each stage with `run_stage`."""
    started = time.perf_counter()
    init = commands["init"]
    eeg_config = read_eeg_config(Path(init[init.index("--eeg-config") + 1])) if "--eeg-config" in init else None
    init_model(folder / "init", tiny=True, labels=list(labels), eeg_config=eeg_config, seed=seed,
               eeg_encoder=eeg_encoder, overwrite=True)  # a rerun replaces its own init folder
    timings["init"] = round(time.perf_counter() - started, 1)
    for stage in STAGES:
        started = time.perf_counter()
        run_stage(stage, commands[stage][2:])
        timings[stage] = round(time.perf_counter() - started, 1)
        print(f"quickstart: {stage} done in {timings[stage]} s ({folder / stage})", flush=True)


def _specs(dataset, protocol: str, commands_stage3: list[str]) -> list[SplitSpec]:
    """Every (protocol, fold) split, with the test size, seed and validation share of the shipped stage-3 config
    (parsed from its command line, so the evaluation uses the split the stages trained and calibrated on)."""
    script_args = parse_stage_args("stage3", commands_stage3)[0]
    kinds = ("trial", "subject") if protocol == "both" else (protocol,)
    return [SplitSpec(kind, fold=k, test_size=script_args.test_size, seed=script_args.split_seed,
                      validation_size=script_args.validation_size) for kind in kinds for k in range(n_folds(dataset, kind))]


@dataclass
class QuickstartRun:
    """What a quickstart is asked to do (see `add_arguments`)."""

    output_dir: Path
    data: Path | None = None
    seeds: tuple[int, ...] = (0,)
    protocol: str = "trial"
    eeg_encoder: str = "patch"
    on_validation: bool = False
    settings: QuickstartSettings | None = None
    overrides: dict | None = None  # stage -> extra command-line overrides (tests)
    configs: Path = CONFIGS  # the recipe: eeg_config.yaml, stage{1,2,3}.yaml, quickstart.yaml

    def command(self) -> str:
        parts = ["e2llm", "quickstart", "--output-dir", str(self.output_dir), "--seeds", *map(str, self.seeds),
                 "--protocol", self.protocol]
        parts += ["--data", str(self.data)] if self.data is not None else []
        if self.settings is not None and self.settings.max_test_windows is not None:
            parts += ["--max-test-windows", str(self.settings.max_test_windows)]
        parts += ["--eeg-encoder", self.eeg_encoder] if self.eeg_encoder != "patch" else []
        parts += ["--configs", str(self.configs)] if Path(self.configs) != CONFIGS else []
        return shlex.join(parts + (["--on-validation"] if self.on_validation else []))


def _prepare(plan: QuickstartRun) -> Path:
    """The prepared folder the runs train on (synthetic data written first unless `plan.data`); under
    `on_validation`, its training side only."""
    prepared = Path(plan.data) if plan.data is not None else make_synthetic_data(plan.output_dir, plan.settings)
    if not plan.on_validation:
        return prepared
    if plan.protocol != "trial":
        raise ValueError("--on-validation scores validation trials of the trial split: use --protocol trial")
    script_args = parse_stage_args("stage3", ["--config", str(plan.configs / "stage3.yaml")])[0]
    return validation_data(prepared, plan.output_dir, script_args.split_seed, script_args.test_size)


def _one_run(plan: QuickstartRun, dataset, prepared: Path, spec: SplitSpec, seed: int, folder: Path) -> dict:
    labels = list(dataset.features["emotion"].names)
    overrides = dict(plan.overrides or {})
    shipped = parse_stage_args("stage3", ["--config", str(plan.configs / "stage3.yaml")])[0].tasks
    tasks = supported_tasks(shipped, labels, dataset.column_names)
    if list(tasks) != list(shipped):  # the data's labels allow fewer tasks than the shipped recipe's
        overrides["stage3"] = ["--tasks", *tasks, *overrides.get("stage3", ())]
    commands = run_commands(folder, prepared, spec, seed, labels, plan.eeg_encoder, overrides, plan.configs)
    timings = {}
    train_run(commands, folder, labels, seed, plan.eeg_encoder, timings)
    started = time.perf_counter()
    report = evaluate_run(dataset, spec, seed, folder, plan.settings, plan.command())
    timings["evaluation"] = round(time.perf_counter() - started, 1)
    report["timings_seconds"] = timings
    report["commands"] = {step: shlex.join(["e2llm", *argv]) for step, argv in commands.items()}
    return report


def run_quickstart(plan: QuickstartRun) -> dict:
    """Run the quickstart for every protocol fold and training seed; returns the report (also ``report.json``).
    The report's top level is the first protocol's summary; ``protocols`` holds each protocol's."""
    if plan.protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, got {plan.protocol!r}")
    if not plan.seeds:
        raise ValueError("give at least one training seed")
    plan = replace(plan, output_dir=Path(plan.output_dir), configs=Path(plan.configs),
                   settings=plan.settings or QuickstartSettings.from_file(Path(plan.configs) / "quickstart.yaml"))
    plan.output_dir.mkdir(parents=True, exist_ok=True)
    transformers.logging.set_verbosity_error()
    datasets.disable_progress_bars()
    # the shipped configs pin memory for a GPU; on a CPU torch warns once per data loader
    warnings.filterwarnings("ignore", message="'pin_memory' argument is set as true but no accelerator")
    started = time.perf_counter()
    prepared = _prepare(plan)
    dataset = load_prepared(prepared)
    specs = _specs(dataset, plan.protocol, ["--config", str(plan.configs / "stage3.yaml")])
    data_seconds = round(time.perf_counter() - started, 1)
    reports, runs = {}, []
    for seed in plan.seeds:  # seed by seed, so an interrupted run has whole seeds of every protocol
        for spec in specs:
            single = len(plan.seeds) * len(specs) == 1
            folder = plan.output_dir if single else plan.output_dir / "runs" / f"{spec.kind}-fold{spec.fold}-seed{seed}"
            report = _one_run(plan, dataset, prepared, spec, seed, folder)
            runs.append({"protocol": spec.kind, "fold": spec.fold, "seed": seed, "folder": str(folder),
                         "timings_seconds": report["timings_seconds"],
                         "evaluation_seconds": report["runs"][0].get("seconds", {}), "alignment": report.get("alignment"),
                         "commands": report["commands"]})
            reports.setdefault(spec.kind, []).append(report)
    return _write_reports(plan, reports, runs, data_seconds, time.perf_counter() - started)


def _write_reports(plan: QuickstartRun, reports: dict, runs: list, data_seconds: float, total: float) -> dict:
    command = plan.command()
    protocols = {kind: {**summarize(found), "command": command} for kind, found in reports.items()}
    report = {**next(iter(protocols.values())), "protocols": protocols, "command": command,
              "quickstart": {"settings": asdict(plan.settings), "configs": str(plan.configs), "seeds": list(plan.seeds),
                             "protocol": plan.protocol, "on_validation": plan.on_validation,
                             "data": str(plan.data) if plan.data is not None else "synthetic (SEED-VII's layout)",
                             "runs": runs, "data_seconds": data_seconds, "total_seconds": round(total, 1),
                             "device": "cuda" if torch.cuda.is_available() else "cpu",
                             "load_average_1min": round(os.getloadavg()[0], 2),
                             "threads": {"torch": torch.get_num_threads(),
                                         **{name: os.environ.get(name) for name in THREAD_SETTINGS}}}}
    return write_quickstart_report(report, plan.output_dir)


def write_quickstart_report(report: dict, output_dir: Path) -> dict:
    """Write a quickstart `report` into `output_dir`: report.md (report-<protocol>/ for each of several protocols)
    and report.json; returns it with the files written (``files``)."""
    report["files"] = write_report(report, output_dir)
    if len(report["protocols"]) > 1:
        for kind, summary in report["protocols"].items():
            summary["files"] = write_report(summary, output_dir / f"report-{kind}")
    (output_dir / "report.json").write_text(json.dumps(_clean(report), indent=2, default=str) + "\n")
    return report


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--output-dir", type=Path, default=Path("outputs/quickstart"), help="where everything goes")
    parser.add_argument("--data", type=Path, default=None, help="a folder from `e2llm prepare` (default: synthetic)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0],
                        help="training seeds: the whole training is repeated per seed (data and split stay fixed) "
                             "and the table gives mean ± std over seeds")
    parser.add_argument("--protocol", choices=PROTOCOLS, default="trial",
                        help="trial: held-out trials per subject; subject: leave one subject out, every fold; both")
    parser.add_argument("--full", action="store_true",
                        help="the README's run: --seeds 0 1 2 --protocol both (9 trainings: 3 seeds x (1 trial split "
                             "+ 2 folds of the 2 synthetic subjects), about 9 times the default run's wall time)")
    parser.add_argument("--on-validation", action="store_true",
                        help="for recipe work: train on the training trials minus a validation part and score that "
                             "part; the test trials are left out")
    parser.add_argument("--baselines", nargs="*", default=None, choices=["de_logreg", "eegnet_v4", "fbcnet", "shallow_convnet"],
                        help="baselines on the same split (default: quickstart.yaml's)")
    parser.add_argument("--max-test-windows", type=int, default=None, help="evaluate on at most this many windows")
    parser.add_argument("--configs", type=Path, default=CONFIGS, metavar="DIR",
                        help="the recipe: a folder with eeg_config.yaml, stage1.yaml, stage2.yaml, stage3.yaml and "
                             "quickstart.yaml (default: the shipped training/configs/quickstart; copy it to change it)")
    parser.add_argument("--eeg-encoder", default="patch", choices=("patch", "eegpt", "cbramod", "labram"),
                        help="the EEG encoder: e2llm's patch transformer (eeg_config.yaml) or a randomly initialised "
                             "tiny foundation encoder with the published input contract (EEGPT: 256 Hz, 4-s windows)")


def run(args: argparse.Namespace) -> int:
    overrides = {"max_test_windows": args.max_test_windows}
    if args.baselines is not None:
        overrides["baselines"] = tuple(args.baselines)
    seeds, protocol = ((0, 1, 2), "both") if args.full else (tuple(args.seeds), args.protocol)
    configs = Path(getattr(args, "configs", CONFIGS))
    settings = QuickstartSettings.from_file(configs / "quickstart.yaml", **overrides)
    report = run_quickstart(QuickstartRun(args.output_dir, args.data, seeds, protocol, args.eeg_encoder,
                                          args.on_validation, settings, configs=configs))
    print("\n" + results_table(report))
    example = next((e for e in report["examples"] if e["task"] == "emotion"), None)
    if example is not None:
        print(f"\nexample answer (true emotion: {example['true']}):\n{example['generated_text'].strip()}")
    first = report["quickstart"]["runs"][0]
    print("\nthe first run, step by step:\n" + "\n".join(f"  {line}" for line in first["commands"].values()))
    print(f"\n{timing_table(report)}\nreport in {args.output_dir / 'report.md'}\nreproduce: {report['command']}")
    return 0


__all__ = ["CONFIGS", "PROTOCOLS", "QUICKSTART_EEG_CONFIG", "QuickstartRun", "QuickstartSettings", "add_arguments",
           "encoder_overrides", "make_synthetic_data", "run", "run_commands", "run_quickstart", "supported_tasks",
           "validation_data", "write_quickstart_report"]
