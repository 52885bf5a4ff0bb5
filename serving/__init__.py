"""e2llm.serving: E2LLM models served with vLLM (`pip install 'e2llm[serve]'`).

| module | what |
|---|---|
| `export` | a merged E2LLM's language model as a stock Qwen folder vLLM loads natively |
| `sampling` | Transformers generation settings -> vLLM sampling parameters; label scoring as vLLM requests |
| `engine` | `VLLMLanguageModel`: a V1 `AsyncLLM` fed `prompt_embeds`, callable from any thread |
| `pipeline` | `VLLMEEGEmotionPipeline` (the `eeg-emotion` pipeline on vLLM), `load_serving_pipeline` |
| `requests` | the HTTP API's JSON formats |
| `server` | the FastAPI app of `e2llm serve` |
| `cli` | `e2llm serve MODEL` (also `python -m e2llm.serving MODEL`) |

Why a stock folder and not a vLLM model plugin: vLLM's own Qwen implementation (its kernels, CUDA graphs, tensor
parallelism, prefix caching) serves the language model unchanged, and nothing e2llm-specific has to follow vLLM's
internal model interfaces from release to release; the EEG enters as prompt embeddings, which vLLM's V1 engine
takes as they are. Only `export` and `requests` import without vLLM.
"""

from .language_model_export import export_language_model

__all__ = ["export_language_model"]
