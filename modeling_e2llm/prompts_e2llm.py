"""Prompt token ids for the `eeg-emotion` pipeline, built once per question.

The chat template is rendered and tokenised once per question (or `prompt` conversation); its single `<|eeg|>`
placeholder id is then spliced into the window's run of `num_eeg_tokens` placeholder ids. A model trained with each
window's measured evidence after the question gets that line too: the template is rendered once with a marker where
the line goes, and each window's text is tokenised from it, exactly as training tokenised its prompts (the evidence
line as a new text part after the question; `processing.instructions.build_instructions`).
"""

from __future__ import annotations

import json

DEFAULT_QUESTION = "Which emotion does this EEG show? Explain your reasoning from the signal, then answer."
_EVIDENCE_MARK = "\x00evidence\x00"


def conversation(question: str | None, prompt, evidence: str | None = None) -> list[dict]:
    """The chat of one window: `prompt` (a conversation with one `{"type": "eeg"}` part, or a string) or the
    `question` (default `DEFAULT_QUESTION`), with the `evidence` line as a new text part after the user's text."""
    if prompt is not None and question is not None:
        raise ValueError("pass either question (text) or prompt (a conversation), not both")
    if isinstance(prompt, str):
        question, prompt = prompt, None
    if prompt is None:
        prompt = [{"role": "user", "content": [{"type": "eeg"}, {"type": "text", "text": question or DEFAULT_QUESTION}]}]
    parts = [p for m in prompt if not isinstance(m.get("content"), str) for p in m["content"]]
    if sum(p.get("type") == "eeg" for p in parts) != 1:
        raise ValueError("a prompt conversation must hold exactly one {'type': 'eeg'} content part")
    if evidence is None:
        return list(prompt)
    return [{**m, "content": [*m["content"], {"type": "text", "text": "\n" + evidence}]}
            if not isinstance(m.get("content"), str) and any(p.get("type") == "eeg" for p in m["content"]) else m
            for m in prompt]


class PromptBuilder:
    """Prompt ids of a window: `ids(question, prompt, evidence)` -> `list[int]` with the window's placeholder run."""

    def __init__(self, processor):
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self._templates: dict[tuple, str] = {}
        self._plain: dict[tuple, list[int]] = {}

    def _key(self, question, prompt) -> tuple:
        return question, None if prompt is None else json.dumps(prompt, sort_keys=True, default=str)

    def _template(self, question, prompt) -> str:
        key = self._key(question, prompt)
        if key not in self._templates:
            text = self.processor.apply_chat_template(conversation(question, prompt, _EVIDENCE_MARK),
                                                      add_generation_prompt=True)
            self._templates[key] = text
        return self._templates[key]

    def _splice(self, ids: list[int]) -> list[int]:
        eeg, k = self.processor.eeg_token_id, self.processor.num_eeg_tokens
        if ids.count(eeg) != 1:
            raise ValueError(f"the prompt must hold exactly one EEG placeholder, found {ids.count(eeg)}")
        at = ids.index(eeg)
        return ids[:at] + [eeg] * k + ids[at + 1 :]

    def ids(self, question: str | None, prompt=None, evidence: str | None = None) -> list[int]:
        """Token ids of one window's prompt (the generation prompt appended)."""
        if evidence is None:
            key = self._key(question, prompt)
            if key not in self._plain:
                text = self.processor.apply_chat_template(conversation(question, prompt), add_generation_prompt=True)
                self._plain[key] = self._splice(self.tokenizer(text, add_special_tokens=False)["input_ids"])
            return list(self._plain[key])
        text = self._template(question, prompt).replace(_EVIDENCE_MARK, evidence, 1)
        return self._splice(self.tokenizer(text, add_special_tokens=False)["input_ids"])


__all__ = ["DEFAULT_QUESTION", "PromptBuilder", "conversation"]
