"""The usage code a model card shows: plain transformers calls that run where e2llm is not installed."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Mapping, Sequence

# The 19 electrodes of the 10-20 system, used in the example when the training montage is unknown.
TEN_TWENTY = (
    "Fp1",
    "Fp2",
    "F7",
    "F3",
    "Fz",
    "F4",
    "F8",
    "T7",
    "C3",
    "Cz",
    "C4",
    "T8",
    "P7",
    "P3",
    "Pz",
    "P4",
    "P8",
    "O1",
    "O2",
)
QUESTION = "Which emotion does this EEG show? Explain your reasoning."


def usage_code(
    model_id: str,
    channel_names: Sequence[str] = (),
    contract: Mapping | None = None,
    with_pipeline: bool = True,
    seconds: int = 60,
    max_new_tokens: int = 128,
) -> str:
    """Python source loading `model_id` with `trust_remote_code=True` and answering for `seconds` of EEG.

    The EEG is a random `(n_channels, n_times)` array in microvolts at the model's rate (replace it by a recording;
    any rate and any 10-05 montage are accepted and mapped).
    """
    rate = int((contract or {}).get("sampling_rate") or 200)
    channels = list(channel_names) or list(TEN_TWENTY)
    channel_list = "\n".join(
        textwrap.wrap(
            ", ".join(json.dumps(c) for c in channels), 96, initial_indent="    ", subsequent_indent="    "
        )
    )
    code = f"""\
import numpy as np
from transformers import AutoModelForCausalLM, AutoProcessor

model_id = {json.dumps(model_id)}
processor = AutoProcessor.from_pretrained(model_id, trust_remote_code=True)
model = AutoModelForCausalLM.from_pretrained(model_id, trust_remote_code=True)

# {seconds} s of EEG, (n_channels, n_times) in microvolts at {rate} Hz: replace with your recording
channel_names = [
{channel_list}
]
eeg = 20.0 * np.random.default_rng(0).standard_normal((len(channel_names), {seconds} * {rate}))

conversation = [{{"role": "user", "content": [{{"type": "eeg"}}, {{"type": "text", "text": {json.dumps(QUESTION)}}}]}}]
prompt = processor.apply_chat_template(conversation, add_generation_prompt=True)
inputs = processor(text=prompt, eeg=eeg, sampling_rate={rate}, channel_names=channel_names, units="uV",
                   return_tensors="pt")
output = model.generate(**inputs, max_new_tokens={max_new_tokens}, do_sample=False)
print(processor.decode(output[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True))
"""
    if with_pipeline:
        code += f"""
from transformers import pipeline

eeg_emotion = pipeline("eeg-emotion", model=model_id, trust_remote_code=True)
print(eeg_emotion(eeg, sampling_rate={rate}, channel_names=channel_names, units="uV", max_new_tokens={max_new_tokens}))
"""
    return code


__all__ = ["TEN_TWENTY", "usage_code"]
