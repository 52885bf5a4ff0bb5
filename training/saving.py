"""What stage 3 writes: ``OUTPUT/adapter`` (the PEFT adapter and the processor) and ``OUTPUT/merged`` (a plain,
self-contained E2LLM with the adapters folded in, and its processor); a fully fine-tuned model only the latter.
Each gets the stage's provenance. No model card is written here: `e2llm card` / `e2llm push` render it from the
folder's own files, so it never describes an evaluation the folder has not had."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from peft import PeftModel

from e2llm.modeling_e2llm import E2LLMForConditionalGeneration
from e2llm.provenance_e2llm import write_provenance

logger = logging.getLogger(__name__)
ADAPTER_DIR = "adapter"
MERGED_DIR = "merged"


def merged_model(peft_model):
    """A plain `E2LLMForConditionalGeneration` with the adapters folded in, in place (no second copy in memory):
    the PEFT model must not be trained further afterwards."""
    return peft_model.merge_and_unload()


def _reload_adapter(adapter_dir: Path):
    base = json.loads((adapter_dir / "adapter_config.json").read_text())["base_model_name_or_path"]
    return PeftModel.from_pretrained(E2LLMForConditionalGeneration.from_pretrained(base), str(adapter_dir))


def save_instruction_model(trainer, processor, output_dir, merge: bool = True, provenance: list | None = None) -> dict:
    """Write ``adapter/`` and, with `merge`, ``merged/`` under `output_dir` (a model trained without PEFT: only
    ``merged/``), each with `processor` and `provenance` (stage records). Returns the paths and, under ``"model"``,
    the merged model on the main process (merging happens in place)."""
    output_dir = Path(output_dir)
    adapter_dir, merged_dir = output_dir / ADAPTER_DIR, output_dir / MERGED_DIR
    main = trainer.is_world_process_zero()
    model = trainer.accelerator.unwrap_model(trainer.model)
    if not isinstance(model, PeftModel):
        trainer.save_model(str(merged_dir))  # gathers sharded weights
        written = {"merged": merged_dir, "model": model}
    else:
        trainer.save_model(str(adapter_dir))
        written = {"adapter": adapter_dir}
        if merge:
            if trainer.is_fsdp_enabled or trainer.is_deepspeed_enabled:
                logger.warning("sharded training: the merged model is built from the saved adapter, not in memory")
                model = _reload_adapter(adapter_dir)
            if main:
                written["model"] = merged_model(model)
                written["model"].save_pretrained(merged_dir)
            written["merged"] = merged_dir
    if main:
        for folder in (written.get("adapter"), written.get("merged")):
            if folder is not None:
                processor.save_pretrained(folder)
                if provenance is not None:
                    write_provenance(folder, provenance)
    trainer.accelerator.wait_for_everyone()
    return written


__all__ = ["ADAPTER_DIR", "MERGED_DIR", "merged_model", "save_instruction_model"]
