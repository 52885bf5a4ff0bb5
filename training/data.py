"""Batches for the training stages, as TRL builds them: rows prepared once, collators that only gather and pad.

* Stage 1 trains on `WindowRows` (window index, label, optional subject label and evidence targets) whose model
  inputs `WindowClassificationCollator` gathers from a stage's `WindowTensors` (`e2llm.training.window_tensors`).
* Stages 2 and 3 train on rows of `tokenize_instructions`: each conversation tokenised once, exactly as
  `generate` sees the prompt (the chat template with the EEG placeholders expanded) followed by the answer.
  `InstructionCollator` pads them (loss on the answer only) or packs them padding-free, with the EEG of each row.
* `EEGClassificationCollator` runs the feature extractor per batch on dataset rows, for loops of one's own.

Collators follow TRL's pattern: `@dataclass` objects called on a list of rows, returning a dict of tensors.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import datasets
import numpy as np
import torch

from e2llm.processing.dataset_io import DATASET_UNITS, dataset_metadata
from e2llm.processing.instructions import conversation
from e2llm.processing.synthetic_windows import synthetic_window_dataset
from e2llm.training.window_tensors import WindowTensors

IGNORE_INDEX = -100


class WindowRows(torch.utils.data.Dataset):
    """Stage-1 rows: ``window`` (index into the stage's `WindowTensors`), ``labels`` (class id) and optionally
    ``subject_labels`` and ``evidence_targets``, each a tensor with one entry per row."""

    def __init__(self, **columns: torch.Tensor):
        lengths = {len(column) for column in columns.values()}
        if len(lengths) != 1:
            raise ValueError(f"the columns of WindowRows must have one length, got {sorted(lengths)}")
        self.columns = columns

    def __len__(self) -> int:
        return len(self.columns["window"])

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {name: column[i] for name, column in self.columns.items()}


@dataclass
class WindowClassificationCollator:
    """Stage-1 batches from `WindowRows`: ``eeg_values`` `(batch, n_channels, window_samples)`, ``eeg_channel_ids``,
    ``eeg_channel_mask`` `(batch, n_channels)` gathered from `windows`, ``labels`` `(batch,)` and, when the rows
    have them, ``subject_labels`` `(batch,)` and ``evidence_targets`` `(batch, n_features)`."""

    windows: WindowTensors

    def __call__(self, rows: Sequence[dict]) -> dict[str, torch.Tensor]:
        batch = {name: torch.stack([row[name] for row in rows]) for name in rows[0]}
        return {**self.windows.gather(batch.pop("window")), **batch}


@dataclass
class EEGClassificationCollator:
    """Stage-1 batches straight from prepared dataset rows, the feature extractor run per batch.

    Input rows: ``eeg`` `(n_channels, n_times)` in `units`, the label column (``emotion``), optionally ``subject``.
    Output: ``eeg_values`` `(batch, n_channels, window_samples)`, ``eeg_channel_ids``, ``eeg_channel_mask``
    `(batch, n_channels)`, ``labels`` `(batch,)` and, with `subject_ids`, ``subject_labels`` `(batch,)` (index of
    each row's subject in `subject_ids`; -100 for others). Each row must give exactly one model window; prepared
    windows are already filtered at trial level, so `apply_filters=False`.
    """

    feature_extractor: object
    sampling_rate: float
    channel_names: Sequence[str]
    units: str = DATASET_UNITS
    label_column: str = "emotion"
    subject_ids: Sequence[int] | None = None
    apply_filters: bool = False

    def __call__(self, examples: Sequence[dict]) -> dict[str, torch.Tensor]:
        windows = [np.asarray(example["eeg"], dtype=np.float32) for example in examples]
        features = self.feature_extractor(windows, sampling_rate=self.sampling_rate,
                                          channel_names=list(self.channel_names), units=self.units,
                                          apply_filters=self.apply_filters, return_tensors="pt")
        if int(features["eeg_num_windows"].max()) != 1 or len(features["eeg_values"]) != len(examples):
            raise ValueError(
                "each row must hold exactly one model window; got "
                f"{features['eeg_num_windows'].tolist()} windows per row (window length differs from the model's?)"
            )
        batch = {name: features[name] for name in ("eeg_values", "eeg_channel_ids", "eeg_channel_mask")}
        batch["labels"] = torch.tensor([int(example[self.label_column]) for example in examples], dtype=torch.long)
        if self.subject_ids is not None:
            index = {int(s): i for i, s in enumerate(self.subject_ids)}
            batch["subject_labels"] = torch.tensor([index.get(int(e["subject"]), IGNORE_INDEX) for e in examples])
        return batch


def collator_kwargs(dataset) -> dict:
    """`sampling_rate`, `channel_names` and `units` of a prepared dataset, for `EEGClassificationCollator`."""
    metadata = dataset_metadata(dataset)
    return {"sampling_rate": float(metadata["sampling_rate"]), "channel_names": list(metadata["channel_names"]),
            "units": metadata["units"]}


def _prefill_length(tokenizer, prefill: str | None, answer_ids: list[int]) -> int:
    """How many leading answer tokens are the row's ``prefill`` (given to the model, kept out of the loss)."""
    if not prefill:
        return 0
    ids = tokenizer(prefill, add_special_tokens=False)["input_ids"]
    if list(answer_ids[: len(ids)]) != ids:
        raise ValueError(f"the completion does not start with the tokens of its prefill {prefill!r}")
    return len(ids)


def tokenize_instructions(processor, conversations, windows: Sequence[int] | None = None,
                          max_length: int | None = None) -> datasets.Dataset:
    """Tokenise the ``prompt`` / ``completion`` (/ ``prefill``) rows of `conversations` once: a dataset whose row i
    is ``input_ids`` (prompt then answer), ``prompt_length`` (how many leading tokens take no loss: the prompt and
    the answer's given prefill) and ``window`` (index of its EEG window in the stage's `WindowTensors`).

    The prompt is the chat template rendered with ``add_generation_prompt=True`` with each ``<|eeg|>`` expanded to
    the processor's tokens of one window (exactly what `generate` sees); the answer plus the end-of-turn token is
    tokenised separately and appended, so the boundary never depends on BPE merges. `max_length` truncates the
    answer's end, never the EEG tokens. `windows`: each row's window index (default: row i is window i)."""
    tokenizer = processor.tokenizer
    columns = conversations.select_columns([c for c in ("prompt", "completion", "prefill")
                                            if c in conversations.column_names])[:]
    prompts = [processor.apply_chat_template(conversation(p), add_generation_prompt=True) for p in columns["prompt"]]
    replacement = processor.replace_eeg_token({"eeg_num_windows": [1]}, 0)
    expanded = [prompt.replace(processor.eeg_token, replacement) for prompt in prompts]  # one window per prompt
    prompt_ids = tokenizer(expanded, add_special_tokens=False)["input_ids"]
    answers = tokenizer([c + tokenizer.eos_token for c in columns["completion"]], add_special_tokens=False)["input_ids"]
    prefills = columns.get("prefill") or [""] * len(prompts)
    rows, lengths = [], []
    for prompt, answer, prefill in zip(prompt_ids, answers, prefills):
        given = _prefill_length(tokenizer, prefill, answer)
        prompt, answer = list(prompt) + answer[:given], answer[given:]
        if max_length is not None:
            if max_length - len(prompt) < 1:
                raise ValueError(f"max_length={max_length} leaves no room for the answer after a prompt of "
                                 f"{len(prompt)} tokens")
            answer = answer[: max_length - len(prompt)]
        rows.append(prompt + answer)
        lengths.append(len(prompt))
    index = range(len(rows)) if windows is None else windows
    return datasets.Dataset.from_dict({"input_ids": rows, "prompt_length": lengths, "window": [int(w) for w in index]})


class EmotionTokenDropout:
    """Replace the emotion token (the last of a frozen encoder's pooled tokens) of each training row with
    probability `p` by `blank` `(hidden,)`, the token of uniform class probabilities. Rows of windows at or after
    `n_train_windows` (validation) are never changed; the draws are seeded."""

    def __init__(self, p: float, blank: torch.Tensor, n_train_windows: int, seed: int = 0):
        if not 0.0 <= p < 1.0:
            raise ValueError(f"emotion_token_dropout must be in [0, 1), got {p}")
        self.p, self.blank, self.n_train_windows = p, blank.detach().cpu(), n_train_windows
        self.generator = torch.Generator().manual_seed(seed)

    def __call__(self, eeg: dict, windows: Sequence[int]) -> None:
        pooled = eeg["eeg_features"].pooler_output  # (rows, n_tokens, hidden), a fresh gather: changed in place
        drop = torch.rand(len(windows), generator=self.generator) < self.p
        drop &= torch.tensor([w < self.n_train_windows for w in windows])
        pooled[drop, -1] = self.blank.to(pooled.dtype)


@dataclass
class InstructionCollator:
    """Stage-2/3 batches from `tokenize_instructions` rows, loss on the answer only (``labels`` -100 on the prompt, the
    prefill and padding), with each row's EEG from `windows` (``eeg_values`` + channel ids and mask, or
    ``eeg_features`` for a frozen encoder).

    Padded (default): ``input_ids``, ``attention_mask``, ``position_ids`` `(batch, longest)`, padded on the left
    as for generation, so every answer ends its row; ``logits_to_keep`` (the longest answer + 1) and ``labels``
    `(batch, logits_to_keep)` for those last positions only: the model computes the LM head and its loss where
    answers are (about a quarter of a stage-3 row), not on the prompts.
    Packed (`pack_rows`): the rows one after the other in one sequence, ``input_ids``, ``labels``, ``position_ids``
    `(1, total)` with positions restarting at each row (sdpa builds a block-diagonal causal mask from them, so no
    row attends to another), ``cu_seq_lens_q``/``cu_seq_lens_k`` `(n_rows + 1,)` and ``max_length_q``/
    ``max_length_k`` for flash-attention's variable-length kernel (computed here, not from the device), and
    ``use_cache=False`` (Transformers reads row boundaries from the position ids only without a cache). Each row's
    EEG tokens stay inside it and are filled in row order, as in the padded batch.

    Emotion-token dropout (`EmotionTokenDropout`, frozen encoder only): the emotion token of a share of the training
    rows is replaced by the head's reading of no class (uniform probabilities), so the language model must read the
    other EEG tokens to answer them."""

    windows: WindowTensors
    pad_token_id: int
    pack_rows: bool = False
    emotion_token_dropout: EmotionTokenDropout | None = None

    def __call__(self, rows: Sequence[dict]) -> dict:
        ids = [torch.tensor(row["input_ids"], dtype=torch.long) for row in rows]
        labels = [torch.cat([torch.full((row["prompt_length"],), IGNORE_INDEX), i[row["prompt_length"]:]])
                  for row, i in zip(rows, ids)]
        eeg = self.windows.model_inputs(torch.tensor([row["window"] for row in rows]))
        if self.emotion_token_dropout is not None:
            self.emotion_token_dropout(eeg, [row["window"] for row in rows])
        if self.pack_rows:
            return {**_packed(ids, labels), **eeg}
        return {**_left_padded(ids, labels, self.pad_token_id, [row["prompt_length"] for row in rows]), **eeg}


def _left_padded(ids: list[torch.Tensor], labels: list[torch.Tensor], pad_token_id: int, prompt_lengths) -> dict:
    lengths = [len(i) for i in ids]
    width = max(lengths)
    keep = max(n - prompt for n, prompt in zip(lengths, prompt_lengths)) + 1  # every answer and the token before it
    pad = lambda rows, value: torch.nn.utils.rnn.pad_sequence(  # noqa: E731
        rows, batch_first=True, padding_value=value, padding_side="left")
    positions = [torch.arange(n) for n in lengths]
    return {"input_ids": pad(ids, pad_token_id), "attention_mask": pad([torch.ones(n, dtype=torch.long)
                                                                         for n in lengths], 0),
            "position_ids": pad(positions, 0), "labels": pad(labels, IGNORE_INDEX)[:, width - keep:],
            "logits_to_keep": keep}


def _packed(ids: list[torch.Tensor], labels: list[torch.Tensor]) -> dict:
    lengths = torch.tensor([len(i) for i in ids])
    cu_seq_lens = torch.cat([torch.zeros(1, dtype=torch.int32), lengths.cumsum(0).to(torch.int32)])
    return {"input_ids": torch.cat(ids)[None], "labels": torch.cat(labels)[None],
            "position_ids": torch.cat([torch.arange(n) for n in lengths.tolist()])[None],
            "cu_seq_lens_q": cu_seq_lens, "cu_seq_lens_k": cu_seq_lens,
            "max_length_q": int(lengths.max()), "max_length_k": int(lengths.max()), "use_cache": False}


__all__ = [
    "IGNORE_INDEX",
    "EEGClassificationCollator",
    "InstructionCollator",
    "WindowClassificationCollator",
    "WindowRows",
    "collator_kwargs",
    "synthetic_window_dataset",
    "tokenize_instructions",
]
