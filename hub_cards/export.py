"""Self-contained Hub export of a saved E2LLM (or of a LoRA adapter on its own).

The exported folder is exactly what `e2llm push` uploads:

- weights as safetensors only (a folder holding only pickled weights is refused);
- `config.json` with the complete `auto_map` (AutoConfig, AutoModel, AutoModelForCausalLM, AutoModelForMultimodalLM,
  AutoFeatureExtractor, AutoProcessor) and, when `e2llm` registers it, the `eeg-emotion` pipeline in `custom_pipelines`;
- the remote code: `e2llm`'s modeling, feature-extraction, processing and pipeline files with every file they
  import relatively, copied from the installed package;
- the processor (`processor_config.json`, tokenizer files, chat template) and `generation_config.json`;
- the model card (`README.md`).

Nothing else is copied (no optimizer or trainer state, no `training_args.bin`), and only the folder's own files: a
symbolic link out of the folder (other than into the Hugging Face cache's blob store) is refused and named before
anything is read (`e2llm.hub_cards.own_files`). Local paths of the build machine are removed from the JSON files, and
the folder is checked afterwards: no pickle anywhere, no local path in any text file.

>>> from e2llm.hub_cards.export import export_model
>>> export_model("runs/stage3", "export/e2llm-qwen05b", repo_id="me/e2llm-qwen05b")  # doctest: +SKIP
"""

from __future__ import annotations

import fnmatch
import json
import logging
import shutil
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from transformers.dynamic_module_utils import get_imports, get_relative_import_files
from transformers.pipelines import PIPELINE_REGISTRY

import e2llm  # registers the pipeline
from e2llm.modeling_e2llm import REMOTE_CODE_AUTO_MAP
from e2llm.safe_output import check_output_dir, staged_dir

from .cards import (
    CARD_INPUTS_FILE,
    PIPELINE_TASK,
    build_adapter_card,
    build_model_card,
    card_inputs,
    hub_id_or_none,
    model_config,
)
from .own_files import own_files
from .paths import find_absolute_paths, find_local_paths, machine_paths, redact_paths, scrub_text

logger = logging.getLogger(__name__)

MODEL_FILES = (
    "config.json",
    "generation_config.json",
    "model.safetensors",
    "model-*-of-*.safetensors",
    "model.safetensors.index.json",
    "processor_config.json",
    "preprocessor_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "merges.txt",
    "chat_template.jinja",
    "chat_template.json",
    "e2llm_provenance.json",  # training provenance (e2llm.training.provenance): kept through export
)
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors", "e2llm_provenance.json")
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".joblib")
_NAME_KEYS = ("_name_or_path", "name_or_path", "base_model_name_or_path")
# What the remote code may import outside try/except blocks: where it runs, only these are promised.
REMOTE_CODE_DEPENDENCIES = frozenset(
    {"torch", "transformers", "numpy", "scipy", "tokenizers", "huggingface_hub", "safetensors"}
)


def is_pickle(path: str | Path) -> bool:
    """True for a file named or shaped like a pickle (protocol-2+ header, or a torch zip archive)."""
    path = Path(path)
    if path.suffix.lower() in PICKLE_SUFFIXES:
        return True
    with path.open("rb") as handle:
        head = handle.read(9)
    if path.suffix == ".safetensors" and len(head) == 9 and head[8:9] == b"{":  # u64 header size, then JSON
        return False
    return (len(head) == 2 and head[0] == 0x80 and 2 <= head[1] <= 5) or head == b"PK"


def _remote_code_files() -> dict[str, Path]:
    """File name -> source path of every module the remote code needs, from the installed `e2llm` package."""
    package = Path(e2llm.__file__).parent
    modules = {ref.split(".")[0] for ref in REMOTE_CODE_AUTO_MAP.values()}
    entry = pipeline_entry()
    if entry is not None:
        modules.add(entry["impl"].split(".")[0])
    files = {}
    for module in sorted(modules):
        source = package / f"{module}.py"
        if not source.is_file():
            raise ValueError(
                f"remote-code module {module}.py is missing from the installed e2llm ({package})"
            )
        for needed in (source, *map(Path, get_relative_import_files(str(source)))):
            files[needed.name] = needed
    return files


def pipeline_entry() -> dict | None:
    """The `custom_pipelines` entry of the `eeg-emotion` pipeline as `e2llm` registers it (None if it does not)."""
    info = PIPELINE_REGISTRY.supported_tasks.get(PIPELINE_TASK)
    if info is None:
        return None
    impl = info["impl"]
    module = impl.__module__.split(".")[-1]
    return {
        "impl": f"{module}.{impl.__name__}",
        "pt": [cls.__name__ for cls in info.get("pt", ())],
        "tf": [],
        "type": info.get("type", "multimodal"),
    }


def _scrub(obj, base_model: str | None):
    """Drop name-or-path entries that are local paths (or set them to `base_model`); every other absolute path (any
    machine's), whole value or inside a text, becomes ``<local>/<name>`` (`verify_export` refuses any left)."""
    if isinstance(obj, Mapping):
        out = {}
        for key, value in obj.items():
            if key in _NAME_KEYS and isinstance(value, str) and value and hub_id_or_none(value) is None:
                if key == "base_model_name_or_path" and base_model:
                    out[key] = base_model
                continue
            out[key] = _scrub(value, base_model)
        return out
    if isinstance(obj, list):
        return [_scrub(value, base_model) for value in obj]
    return redact_paths(obj) if isinstance(obj, str) else obj


def _write_json(path: Path, content: dict) -> None:
    path.write_text(
        json.dumps(content, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8"
    )


def _prepare_output(output_dir: Path, overwrite: bool, sources: Sequence[Path]) -> None:
    """Refuse, before any work, an output folder inside a source, one that holds a source, a plain file, or (with
    `overwrite`) a folder e2llm did not write (`e2llm.safe_output.check_output_dir`)."""
    resolved = output_dir.resolve()
    for source in (Path(s).resolve() for s in sources):
        if source in resolved.parents:
            raise ValueError(
                f"the export folder {output_dir} and the source folder {source} must not contain each other"
            )
    check_output_dir(output_dir, inputs=sources, overwrite=overwrite, option="the export folder")


def _staging(output_dir: Path):
    """A hidden folder beside `output_dir`, marked and renamed into place when the block succeeds, removed when it
    fails; so no half-written folder ever looks like an export."""
    return staged_dir(output_dir, kind="export")


def _exported_files(source: Path, patterns: Sequence[str], extra: Sequence[str] = ()) -> list[Path]:
    """The files of `source` an export reads or copies (names matching `patterns`, and `extra`), each checked to be
    the folder's own (`own_files`: no link out of the folder), before anything is read."""
    names = sorted(p.name for p in source.iterdir() if any(fnmatch.fnmatch(p.name, pattern) for pattern in patterns))
    return own_files(source, [*names, *(n for n in extra if n not in names)], what=f"the export of {source}")


def _copy_matching(source: Path, target: Path, patterns: Sequence[str]) -> list[str]:
    copied = []
    for path in _exported_files(source, patterns):
        if any(fnmatch.fnmatch(path.name, pattern) for pattern in patterns):
            shutil.copyfile(path, target / path.name)
            copied.append(path.name)
    left = sorted(p.name for p in source.iterdir() if p.name not in copied)
    if left:
        logger.info("not exported from %s: %s", source, ", ".join(left))
    return copied


_VOCABULARY_FILES = ("vocab.json", "merges.txt")  # tokens such as "/usr/" are vocabulary, not paths


def _scrub_json_files(folder: Path, base_model: str | None) -> None:
    """Scrub local paths from every JSON file (``tokenizer.json`` outside its vocabulary) and text file."""
    for path in sorted(p for p in folder.iterdir() if p.is_file() and p.name not in _VOCABULARY_FILES):
        if path.suffix == ".json":
            content = json.loads(path.read_text(encoding="utf-8"))
            if path.name == "tokenizer.json":  # leave the vocabulary and merges alone
                kept = {key: content.pop(key) for key in ("model", "added_tokens") if key in content}
                scrubbed = {**_scrub(content, base_model), **kept}
                content.update(kept)
            else:
                scrubbed = _scrub(content, base_model)
            if scrubbed != content:
                _write_json(path, scrubbed)
        elif path.suffix in (".md", ".txt", ".jinja", ".yaml", ".yml"):
            text = path.read_text(encoding="utf-8")
            if scrub_text(text) != text:
                path.write_text(scrub_text(text), encoding="utf-8")


def check_remote_imports(folder: str | Path) -> None:
    """Raise ValueError if a `.py` file under `folder` imports, outside a try/except block, a module other than the
    standard library and `REMOTE_CODE_DEPENDENCIES`: `trust_remote_code` loading refuses such files
    (`transformers.dynamic_module_utils.check_imports`) where that module is not installed."""


    allowed = REMOTE_CODE_DEPENDENCIES | set(sys.stdlib_module_names)
    extra = {
        path.name: sorted(set(get_imports(str(path))) - allowed) for path in sorted(Path(folder).glob("*.py"))
    }
    extra = {name: modules for name, modules in extra.items() if modules}
    if extra:
        raise ValueError(
            f"remote-code files import optional modules outside a try/except block: {extra}. Loading with "
            "trust_remote_code=True would fail where they are not installed; import them inside "
            "`try: ... except ImportError` in the function that needs them"
        )


def verify_export(folder: str | Path, extra_paths: Sequence[str | Path] = ()) -> None:
    """Raise ValueError if `folder` holds a pickle, a text file naming a local path of this machine, or remote code
    needing more than torch, transformers, numpy and scipy."""
    folder = Path(folder)
    check_remote_imports(folder)
    pickles = [str(p.relative_to(folder)) for p in sorted(folder.rglob("*")) if p.is_file() and is_pickle(p)]
    if pickles:
        raise ValueError(f"the export holds pickled files {pickles}: only safetensors weights may ship")
    hits = find_local_paths(folder, machine_paths(*extra_paths))
    if hits:
        raise ValueError(f"the export names local paths of this machine: {hits}")
    hits = [hit for hit in find_absolute_paths(folder) if Path(hit[0]).name not in _VOCABULARY_FILES]
    if hits:
        raise ValueError(f"the export names absolute local paths: {hits}; remove them from the source files")


def export_model(
    model_dir: str | Path,
    output_dir: str | Path,
    repo_id: str | None = None,
    report=None,
    training: Mapping | None = None,
    base_model: str | None = None,
    datasets: Sequence | None = None,
    license: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Write the self-contained folder of a saved E2LLM (model + processor) into `output_dir`.

    Card arguments (`report`, `training`, `base_model`, `datasets`, `license`) default to what `write_model_card`
    recorded in `model_dir`; see `e2llm.hub_cards.build_model_card`. Returns `output_dir`.
    """
    model_dir, output_dir = Path(model_dir), Path(output_dir).resolve()
    _exported_files(model_dir, MODEL_FILES, extra=[CARD_INPUTS_FILE])  # no link out of the folder, before any read
    model_config(model_dir)  # a readable E2LLM config.json, or a ValueError
    names = {p.name for p in model_dir.iterdir()}
    if not any(fnmatch.fnmatch(n, "model*.safetensors") for n in names):
        pickled = sorted(n for n in names if n.endswith(PICKLE_SUFFIXES))
        raise ValueError(
            f"{model_dir} holds no safetensors weights"
            + (f" (only pickled {pickled}: reload and save_pretrained to convert)" if pickled else "")
        )
    missing = [
        need
        for need in ("processor_config.json|preprocessor_config.json", "tokenizer.json|tokenizer_config.json")
        if not names & set(need.split("|"))
    ]
    if missing:
        raise ValueError(
            f"{model_dir} lacks the processor files {missing}: save the processor next to the model"
        )
    recorded = card_inputs(model_dir)
    base_model = base_model or recorded.get("base_model")
    _prepare_output(output_dir, overwrite, [model_dir])
    with _staging(output_dir) as staging:
        _copy_matching(model_dir, staging, MODEL_FILES)
        for name, source in _remote_code_files().items():
            shutil.copyfile(source, staging / name)
        _complete_configs(staging)
        _scrub_json_files(staging, base_model)
        card = build_model_card(
            staging,
            report=report if report is not None else recorded.get("report"),
            training=training if training is not None else recorded.get("training"),
            base_model=base_model,
            datasets=datasets if datasets is not None else recorded.get("datasets"),
            repo_id=repo_id or output_dir.name,
            license=license or recorded.get("license"),
            with_pipeline="custom_pipelines" in json.loads((staging / "config.json").read_text()),
        )
        card.save(staging / "README.md")
        _scrub_json_files(staging, base_model)  # the card too
        verify_export(staging, [model_dir, output_dir, staging])
    return output_dir


def _complete_configs(folder: Path) -> None:
    """Complete `auto_map` in config.json / processor files and register the pipeline for remote code."""
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    config["auto_map"] = {**(config.get("auto_map") or {}), **REMOTE_CODE_AUTO_MAP}
    entry = pipeline_entry()
    if entry is not None:
        config["custom_pipelines"] = {**(config.get("custom_pipelines") or {}), PIPELINE_TASK: entry}
    _write_json(folder / "config.json", config)
    processor_map = {"AutoProcessor": REMOTE_CODE_AUTO_MAP["AutoProcessor"]}
    extractor_map = {"AutoFeatureExtractor": REMOTE_CODE_AUTO_MAP["AutoFeatureExtractor"], **processor_map}
    for name in ("processor_config.json", "tokenizer_config.json", "preprocessor_config.json"):
        path = folder / name
        if not path.is_file():
            continue
        content = json.loads(path.read_text(encoding="utf-8"))
        content["auto_map"] = {
            **(content.get("auto_map") or {}),
            **(extractor_map if name == "preprocessor_config.json" else processor_map),
        }
        if isinstance(content.get("feature_extractor"), dict):
            nested = content["feature_extractor"]
            nested["auto_map"] = {**(nested.get("auto_map") or {}), **extractor_map}
        _write_json(path, content)


def export_adapter(
    adapter_dir: str | Path,
    output_dir: str | Path,
    base_model: str | None = None,
    repo_id: str | None = None,
    report=None,
    datasets: Sequence | None = None,
    license: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a LoRA adapter folder (PEFT `save_pretrained` output) with a card naming its base model.

    `base_model` is the Hub id of the (exported) E2LLM the adapter was trained on; by default the adapter config's
    `base_model_name_or_path` when that is a Hub id. It is written into `adapter_config.json`.
    """
    adapter_dir, output_dir = Path(adapter_dir), Path(output_dir).resolve()
    _exported_files(adapter_dir, ADAPTER_FILES)  # no link out of the folder, before any read
    config_path = adapter_dir / "adapter_config.json"
    if not config_path.is_file():
        raise ValueError(f"{adapter_dir} holds no adapter_config.json: not a PEFT adapter folder")
    if not (adapter_dir / "adapter_model.safetensors").is_file():
        raise ValueError(
            f"{adapter_dir} holds no adapter_model.safetensors (pickled adapters are not exported)"
        )
    recorded_base = json.loads(config_path.read_text(encoding="utf-8")).get("base_model_name_or_path")
    base_model = base_model or hub_id_or_none(recorded_base)
    if base_model is None or hub_id_or_none(base_model) is None:
        raise ValueError(
            f"the adapter's base model {recorded_base!r} is not a Hub repo id: push the base E2LLM first and pass "
            "its id (--base-model owner/name)"
        )
    _prepare_output(output_dir, overwrite, [adapter_dir])
    with _staging(output_dir) as staging:
        _copy_matching(adapter_dir, staging, ADAPTER_FILES)
        config = json.loads((staging / "adapter_config.json").read_text(encoding="utf-8"))
        config["base_model_name_or_path"] = base_model
        _write_json(staging / "adapter_config.json", _scrub(config, base_model))
        build_adapter_card(
            staging,
            base_model,
            repo_id=repo_id or output_dir.name,
            report=report,
            datasets=datasets,
            license=license,
        ).save(staging / "README.md")
        _scrub_json_files(staging, base_model)  # the card too
        verify_export(staging, [adapter_dir, output_dir, staging])
    return output_dir


def export_folder(source: str | Path, output_dir: str | Path, **kwargs) -> Path:
    """`export_adapter` for a PEFT adapter folder, `export_model` for a saved E2LLM."""
    source = Path(source)
    if not source.is_dir():
        raise ValueError(f"{source} is not a folder")
    if (source / "adapter_config.json").is_file():
        kwargs.pop("training", None)
        return export_adapter(source, output_dir, **kwargs)
    return export_model(source, output_dir, **kwargs)


__all__ = [
    "ADAPTER_FILES",
    "MODEL_FILES",
    "PICKLE_SUFFIXES",
    "REMOTE_CODE_DEPENDENCIES",
    "check_remote_imports",
    "export_adapter",
    "export_folder",
    "export_model",
    "is_pickle",
    "pipeline_entry",
    "verify_export",
]
