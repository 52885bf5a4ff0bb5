"""Tokenizers for E2LLM: an offline byte-level BPE with Qwen's special tokens, and EEG tokens for real Qwen ones."""

from __future__ import annotations

from collections.abc import Iterable

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerBase, PreTrainedTokenizerFast

EEG_START_TOKEN = "<|eeg_start|>"
EEG_TOKEN = "<|eeg|>"
EEG_END_TOKEN = "<|eeg_end|>"
EEG_SPECIAL_TOKENS = (EEG_START_TOKEN, EEG_TOKEN, EEG_END_TOKEN)
QWEN_SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")

# Qwen2's pre-tokenizer split (GPT-4 style), so the offline tokenizer segments text the way Qwen's does.
QWEN_SPLIT_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)

# Text the offline tokenizer learns its merges from when no corpus is given: the words of EEG emotion answers.
DEFAULT_CORPUS = (
    "Reasoning: relative to this subject's baseline, alpha power is low over frontal and parietal regions, "
    "beta and gamma power are high over temporal regions, theta is elevated centrally, delta is unchanged. "
    "Frontal alpha asymmetry is positive (right greater than left), which points to approach motivation; a "
    "negative asymmetry points to withdrawal. Emotion: happiness. Emotion: sadness. Emotion: fear. "
    "Emotion: disgust. Emotion: neutral. Emotion: anger. Emotion: surprise. Valence: positive, negative, neutral. "
    "Arousal: high, low. Intensity: strong, moderate, mild, weak. Scenario: watching a comedy, a horror film, "
    "a documentary, a sad story, an accident, a surprise party. Describe the EEG recording. Which emotion does this "
    "EEG show? Explain your reasoning from the band powers, then answer. The occipital, central and temporal "
    "channels show higher differential entropy in the gamma band than in the subject's average window.",
)


def build_offline_tokenizer(
    corpus: Iterable[str] | None = None,
    vocab_size: int = 1024,
    model_max_length: int = 4096,
    eeg_tokens: bool = True,
) -> PreTrainedTokenizerFast:
    """Train a small byte-level BPE (Qwen-style splitting) with Qwen's and E2LLM's special tokens, offline.

    Every byte is in the alphabet, so any text encodes; `corpus` only decides which merges are learned.
    The result saves and reloads like any Transformers tokenizer and knows `tokenizer.eeg_token`.
    `eeg_tokens=False` leaves the EEG tokens out, as in a real Qwen tokenizer (see [`add_eeg_tokens`]).

    Example:

    ```python
    >>> from e2llm import build_offline_tokenizer
    >>> tokenizer = build_offline_tokenizer()
    >>> tokenizer.eeg_token, tokenizer.convert_ids_to_tokens(tokenizer("<|eeg|><|im_end|>")["input_ids"])
    ('<|eeg|>', ['<|eeg|>', '<|im_end|>'])
    ```"""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN_SPLIT_PATTERN), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    special = [*QWEN_SPECIAL_TOKENS, *(EEG_SPECIAL_TOKENS if eeg_tokens else ())]
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=special,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(list(corpus) if corpus is not None else list(DEFAULT_CORPUS), trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        padding_side="left",
        model_max_length=model_max_length,
        extra_special_tokens=(
            {"eeg_token": EEG_TOKEN, "eeg_start_token": EEG_START_TOKEN, "eeg_end_token": EEG_END_TOKEN}
            if eeg_tokens
            else None
        ),
    )


def add_eeg_tokens(tokenizer: PreTrainedTokenizerBase) -> int:
    """Add `<|eeg_start|>`, `<|eeg|>`, `<|eeg_end|>` to a (Qwen) tokenizer that lacks them; return the `<|eeg|>` id.

    Resize the model's embeddings to `len(tokenizer)` afterwards.
    """
    missing = [t for t in EEG_SPECIAL_TOKENS if t not in tokenizer.get_vocab()]
    if missing:
        tokenizer.add_special_tokens({"additional_special_tokens": missing}, replace_extra_special_tokens=False)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = "<|endoftext|>"
    return tokenizer.convert_tokens_to_ids(EEG_TOKEN)


def check_tokenizer_fits(tokenizer: PreTrainedTokenizerBase, config, source: str = "the tokenizer") -> None:
    """ValueError unless `tokenizer` can serve the E2LLM of `config`: it has `<|eeg|>` under `config.eeg_token_id`,
    and no token id beyond the language model's embeddings (`text_config.vocab_size`), which would fail with
    ``IndexError: index out of range in self`` at the first such token."""
    vocab = tokenizer.get_vocab()
    if EEG_TOKEN not in vocab:
        raise ValueError(f"{source} has no {EEG_TOKEN} token, so no prompt can carry EEG: it is not this model's "
                         "tokenizer. Use the processor saved with the model (AutoProcessor.from_pretrained on its "
                         "folder), or add the EEG tokens (e2llm.add_eeg_tokens) and train the model with them")
    if config.eeg_token_id is not None and vocab[EEG_TOKEN] != config.eeg_token_id:
        raise ValueError(f"{source} gives {EEG_TOKEN} the id {vocab[EEG_TOKEN]} but the model expects "
                         f"eeg_token_id={config.eeg_token_id}: the tokenizer and the model do not belong together; use "
                         "the processor saved with the model")
    rows = getattr(config.text_config, "vocab_size", None)
    largest = max(vocab.values(), default=-1)
    if rows is not None and largest >= rows:
        raise ValueError(f"{source} has token ids up to {largest} but the model's embeddings have {rows} rows: those "
                         "tokens would fail; use the processor saved with the model, or resize the embeddings "
                         "(model.resize_token_embeddings(len(tokenizer))) and train")


__all__ = ["EEG_END_TOKEN", "EEG_START_TOKEN", "EEG_TOKEN", "add_eeg_tokens", "build_offline_tokenizer",
           "check_tokenizer_fits"]
