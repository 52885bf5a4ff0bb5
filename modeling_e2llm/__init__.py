"""e2llm: EEG-to-emotion language models for Hugging Face Transformers.

Importing `e2llm` registers the model with the Auto classes (`AutoConfig`, `AutoModel`, `AutoModelForCausalLM`,
`AutoModelForMultimodalLM`, `AutoFeatureExtractor`, `AutoProcessor`) and marks the classes for remote code, so `save_pretrained` writes the
modeling files and an `auto_map` next to the weights for users without e2llm (`trust_remote_code=True`).
"""

__version__ = "0.1.0"

from transformers import (
    AutoConfig,
    AutoFeatureExtractor,
    AutoModel,
    AutoModelForCausalLM,
    AutoModelForMultimodalLM,
    AutoProcessor,
)
from transformers.pipelines import PIPELINE_REGISTRY

from .answers import LABEL_PREFIX, ParsedAnswer, format_answer, parse_answer
from .assembly import assemble_e2llm, build_tiny_e2llm
from .configuration_e2llm import SEED_VII_EMOTIONS, E2LLMConfig, E2LLMEEGConfig
from .electrodes import ELECTRODE_NAMES, SEED_CHANNELS, canonical_channel_name
from .feature_extraction_e2llm import E2LLMFeatureExtractor
from .modeling_e2llm import E2LLMForConditionalGeneration, E2LLMModel, E2LLMPreTrainedModel
from .modeling_eeg_encoder import E2LLMEEGEncoder, E2LLMEEGForEmotionClassification
from .pipeline_e2llm import EEGEmotionPipeline
from .processing_e2llm import E2LLMProcessor
from .rationale_e2llm import claim_agreement, numbers_not_measured
from .tokenization_e2llm import EEG_TOKEN, add_eeg_tokens, build_offline_tokenizer

AutoConfig.register(E2LLMConfig.model_type, E2LLMConfig, exist_ok=True)
AutoConfig.register(E2LLMEEGConfig.model_type, E2LLMEEGConfig, exist_ok=True)
AutoModel.register(E2LLMConfig, E2LLMModel, exist_ok=True)
AutoModel.register(E2LLMEEGConfig, E2LLMEEGEncoder, exist_ok=True)
AutoModelForCausalLM.register(E2LLMConfig, E2LLMForConditionalGeneration, exist_ok=True)
AutoModelForMultimodalLM.register(E2LLMConfig, E2LLMForConditionalGeneration, exist_ok=True)
AutoFeatureExtractor.register(E2LLMConfig, E2LLMFeatureExtractor, exist_ok=True)
AutoProcessor.register(E2LLMConfig, E2LLMProcessor, exist_ok=True)

E2LLMConfig.register_for_auto_class()
E2LLMEEGConfig.register_for_auto_class()
E2LLMModel.register_for_auto_class("AutoModel")
E2LLMForConditionalGeneration.register_for_auto_class("AutoModelForCausalLM")
E2LLMEEGEncoder.register_for_auto_class("AutoModel")
E2LLMFeatureExtractor.register_for_auto_class("AutoFeatureExtractor")
E2LLMProcessor.register_for_auto_class("AutoProcessor")
if PIPELINE_REGISTRY.supported_tasks.get("eeg-emotion", {}).get("impl") is not EEGEmotionPipeline:
    PIPELINE_REGISTRY.register_pipeline(
        "eeg-emotion", pipeline_class=EEGEmotionPipeline, pt_model=AutoModelForCausalLM, type="multimodal"
    )

__all__ = [
    "EEG_TOKEN",
    "ELECTRODE_NAMES",
    "LABEL_PREFIX",
    "SEED_CHANNELS",
    "SEED_VII_EMOTIONS",
    "E2LLMConfig",
    "E2LLMEEGConfig",
    "E2LLMEEGEncoder",
    "E2LLMEEGForEmotionClassification",
    "E2LLMFeatureExtractor",
    "E2LLMForConditionalGeneration",
    "E2LLMModel",
    "E2LLMPreTrainedModel",
    "E2LLMProcessor",
    "EEGEmotionPipeline",
    "ParsedAnswer",
    "add_eeg_tokens",
    "assemble_e2llm",
    "build_offline_tokenizer",
    "build_tiny_e2llm",
    "canonical_channel_name",
    "claim_agreement",
    "format_answer",
    "numbers_not_measured",
    "parse_answer",
]
