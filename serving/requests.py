"""The HTTP API of `e2llm serve`: JSON requests -> `eeg-emotion` pipeline calls, results -> JSON (no server code).

Two routes take EEG:

- `POST /v1/eeg-emotion`: `{"eeg": EEG, "sampling_rate": 200, "channel_names": [...], "units": "uV",
  "question": "...", "return_rationale": true, "max_new_tokens": 128, "apply_filters": true}` (only `eeg`,
  `sampling_rate`, `channel_names` and `units` required) -> the pipeline's result: `label`, `scores`, `rationale`,
  `generated_text`, `parseable`, `start`, `end` for one window; `label`, `scores`, `votes`, `n_unparseable`,
  `windows` for several.
- `POST /v1/chat/completions` (OpenAI's chat format): one user message holds one content part
  `{"type": "eeg", "eeg": {"data": EEG, "sampling_rate": ..., "channel_names": [...], "units": ...}}` next to its
  text parts; `max_tokens` (or `max_completion_tokens`), `temperature` and `top_p` as in OpenAI's API, except that
  the answer is greedy unless `temperature` > 0 is given. The reply is a `chat.completion` with one choice per EEG
  window (its answer as the message content) and the pipeline's result under `eeg_emotion`.

EEG is `(n_channels, n_times)`: nested lists of numbers, or `{"base64": ..., "shape": [n_channels, n_times],
"dtype": "float32"}` (little-endian bytes, row-major; dtype float32, float64, int16 or int32). A request never
names a file: paths are refused, so a client cannot make the server read its disk.
"""

from __future__ import annotations

import base64
import binascii
import time
import uuid
from collections.abc import Mapping

import numpy as np

DTYPES = ("float32", "float64", "int16", "int32")
EEG_FIELDS = ("sampling_rate", "channel_names", "units")
OPTIONAL_FIELDS = ("question", "return_rationale", "max_new_tokens", "apply_filters")
CHAT_FIELDS = ("model", "messages", "max_tokens", "max_completion_tokens", "temperature", "top_p", "n", "stream",
               "user")
DEFAULT_MAX_EEG_VALUES = 64 * 2**20  # 64 Mi samples: 62 channels x ~75 min at 200 Hz


class RequestError(ValueError):
    """A request the server refuses (HTTP 400), with the message the client gets."""


def decode_eeg(value, max_values: int = DEFAULT_MAX_EEG_VALUES) -> np.ndarray:
    """A request's EEG as a float `(n_channels, n_times)` array; `RequestError` naming what is wrong."""
    if isinstance(value, str):
        raise RequestError("'eeg' must be the samples (nested lists, or {'base64', 'shape', 'dtype'}), not a string: "
                           "the server reads no files")
    if isinstance(value, Mapping):
        unknown = set(value) - {"base64", "shape", "dtype"}
        if unknown or "base64" not in value or "shape" not in value:
            raise RequestError(f"encoded 'eeg' needs 'base64' and 'shape' (and may give 'dtype'); got keys "
                               f"{sorted(value)}")
        dtype = value.get("dtype", "float32")
        if dtype not in DTYPES:
            raise RequestError(f"'eeg' dtype {dtype!r} is not one of {list(DTYPES)}")
        shape = value["shape"]
        if (not isinstance(shape, list) or len(shape) != 2
                or not all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in shape)):
            raise RequestError(f"'eeg' shape must be [n_channels, n_times] (positive integers), got {shape!r}")
        if shape[0] * shape[1] > max_values:
            raise RequestError(f"'eeg' holds {shape[0] * shape[1]} values; this server takes at most {max_values}")
        try:
            raw = base64.b64decode(value["base64"], validate=True)
        except (binascii.Error, TypeError) as error:
            raise RequestError(f"'eeg' base64 does not decode: {error}") from None
        expected = shape[0] * shape[1] * np.dtype(dtype).itemsize
        if len(raw) != expected:
            raise RequestError(f"'eeg' base64 holds {len(raw)} bytes; shape {shape} of {dtype} needs {expected}")
        return np.frombuffer(raw, dtype=np.dtype(dtype).newbyteorder("<")).reshape(shape).astype(np.float64)
    return _eeg_from_lists(value, max_values)


def _eeg_from_lists(value, max_values: int) -> np.ndarray:
    if not isinstance(value, list) or not value or not all(isinstance(row, list) for row in value):
        raise RequestError("'eeg' must be (n_channels, n_times): a list of channels, each a list of samples")
    if len({len(row) for row in value}) != 1:
        raise RequestError(f"'eeg' channels differ in length: {sorted({len(row) for row in value})}")
    if len(value) * len(value[0]) > max_values:
        raise RequestError(f"'eeg' holds {len(value) * len(value[0])} values; this server takes at most {max_values}")
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise RequestError("'eeg' samples must be numbers") from None
    if array.ndim != 2:
        raise RequestError(f"'eeg' must be 2-D (n_channels, n_times), got shape {array.shape}")
    return array


def pipeline_call(body: Mapping, max_values: int = DEFAULT_MAX_EEG_VALUES) -> tuple[np.ndarray, dict]:
    """`(eeg, keyword arguments of the pipeline call)` of a `/v1/eeg-emotion` request body."""
    if not isinstance(body, Mapping):
        raise RequestError("the request body must be a JSON object")
    unknown = set(body) - {"eeg", "model", *EEG_FIELDS, *OPTIONAL_FIELDS}
    missing = [name for name in ("eeg", *EEG_FIELDS) if name not in body]
    if unknown or missing:
        raise RequestError(f"{'unknown fields ' + str(sorted(unknown)) if unknown else ''}"
                           f"{'; ' if unknown and missing else ''}"
                           f"{'missing fields ' + str(missing) if missing else ''}; a request takes eeg, "
                           f"{', '.join(EEG_FIELDS)} and optionally {', '.join(OPTIONAL_FIELDS)}")
    kwargs = {name: body[name] for name in (*EEG_FIELDS, *OPTIONAL_FIELDS) if body.get(name) is not None}
    _check_types(kwargs)
    return decode_eeg(body["eeg"], max_values), kwargs


def _check_types(kwargs: dict) -> None:
    rate = kwargs.get("sampling_rate")
    if rate is not None and (isinstance(rate, bool) or not isinstance(rate, (int, float))):
        raise RequestError(f"'sampling_rate' must be a number (Hz), got {rate!r}")
    names = kwargs.get("channel_names")
    if names is not None and (not isinstance(names, list) or not all(isinstance(n, str) for n in names)):
        raise RequestError("'channel_names' must be a list of strings")
    for name in ("units", "question"):
        if name in kwargs and not isinstance(kwargs[name], str):
            raise RequestError(f"'{name}' must be a string")
    for name in ("return_rationale", "apply_filters"):
        if name in kwargs and not isinstance(kwargs[name], bool):
            raise RequestError(f"'{name}' must be true or false")
    tokens = kwargs.get("max_new_tokens")
    if tokens is not None and (isinstance(tokens, bool) or not isinstance(tokens, int) or tokens < 1):
        raise RequestError(f"'max_new_tokens' must be a positive integer, got {tokens!r}")


def chat_call(body: Mapping, served_name: str, max_values: int = DEFAULT_MAX_EEG_VALUES) -> tuple[np.ndarray, dict]:
    """`(eeg, keyword arguments of the pipeline call)` of a `/v1/chat/completions` request body."""
    if not isinstance(body, Mapping):
        raise RequestError("the request body must be a JSON object")
    unknown = set(body) - set(CHAT_FIELDS)
    if unknown:
        raise RequestError(f"unsupported fields {sorted(unknown)}; this endpoint takes {', '.join(CHAT_FIELDS)}")
    if body.get("model") not in (None, served_name):
        raise RequestError(f"model {body['model']!r} is not served here; this server serves {served_name!r}")
    if body.get("n", 1) != 1 or body.get("stream"):
        raise RequestError("n > 1 and stream are not supported: each EEG window gets one answer, returned whole")
    conversation, eeg_part = chat_conversation(body.get("messages"))
    kwargs = {name: eeg_part.get(name) for name in EEG_FIELDS}
    kwargs["prompt"] = conversation
    _check_types(kwargs)
    tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    if tokens is not None:
        kwargs["max_new_tokens"] = tokens
    kwargs.update(_sampling(body))
    _check_types(kwargs)
    return decode_eeg(eeg_part.get("data"), max_values), kwargs


def _sampling(body: Mapping) -> dict:
    temperature, top_p = body.get("temperature"), body.get("top_p")
    for name, value in (("temperature", temperature), ("top_p", top_p)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0):
            raise RequestError(f"'{name}' must be a number >= 0, got {value!r}")
    if not temperature:  # greedy: the label and rationale the Transformers pipeline gives
        return {}
    return {"generate_kwargs": {"do_sample": True, "temperature": float(temperature),
                                "top_p": float(1.0 if top_p is None else top_p)}}


def chat_conversation(messages) -> tuple[list[dict], dict]:
    """The pipeline's `prompt` conversation (the EEG part as `{"type": "eeg"}`) and the EEG part of `messages`."""
    if not isinstance(messages, list) or not messages:
        raise RequestError("'messages' must be a non-empty list of {'role', 'content'} objects")
    conversation, eeg_parts = [], []
    for message in messages:
        if not isinstance(message, Mapping) or message.get("role") not in ("system", "user", "assistant"):
            raise RequestError("each message needs a role (system, user or assistant) and content")
        content = message.get("content")
        if isinstance(content, str):
            conversation.append({"role": message["role"], "content": content})
            continue
        if not isinstance(content, list):
            raise RequestError("a message's content must be a string or a list of content parts")
        parts = []
        for part in content:
            kind = part.get("type") if isinstance(part, Mapping) else None
            if kind == "text" and isinstance(part.get("text"), str):
                parts.append({"type": "text", "text": part["text"]})
            elif kind == "eeg" and isinstance(part.get("eeg"), Mapping) and message["role"] == "user":
                eeg_parts.append(part["eeg"])
                parts.append({"type": "eeg"})
            else:
                raise RequestError(f"unsupported content part {part!r}: use {{'type': 'text', 'text': ...}} and one "
                                   "{'type': 'eeg', 'eeg': {'data', 'sampling_rate', 'channel_names', 'units'}} "
                                   "in a user message")
        conversation.append({"role": message["role"], "content": parts})
    if len(eeg_parts) != 1:
        raise RequestError(f"the messages must hold exactly one EEG content part, found {len(eeg_parts)}")
    unknown = set(eeg_parts[0]) - {"data", *EEG_FIELDS}
    if unknown or "data" not in eeg_parts[0]:
        raise RequestError(f"the EEG part needs 'data' (the samples), {', '.join(EEG_FIELDS)}; got keys "
                           f"{sorted(eeg_parts[0])}")
    return conversation, eeg_parts[0]


def jsonable(value):
    """A pipeline result with numpy scalars and arrays as plain JSON values."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def chat_response(result: Mapping, served_name: str) -> dict:
    """An OpenAI `chat.completion` of a pipeline result: one choice per EEG window, the result under `eeg_emotion`."""
    windows = result["windows"] if "windows" in result else [result]
    choices = [{"index": i, "message": {"role": "assistant", "content": window.get("generated_text") or ""},
                "finish_reason": None, "logprobs": None,
                "eeg_window": {"start": window.get("start"), "end": window.get("end")}}
               for i, window in enumerate(windows)]
    return {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()),
            "model": served_name, "choices": choices, "eeg_emotion": jsonable(result)}


__all__ = ["RequestError", "chat_call", "chat_conversation", "chat_response", "decode_eeg", "jsonable",
           "pipeline_call"]
