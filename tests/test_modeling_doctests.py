"""The `>>>` examples in e2llm's docstrings run and print what they show."""

from __future__ import annotations

import doctest
import importlib
import re

import pytest

# Short test recordings are shorter than the 0.1 Hz high-pass kernel; the extractor rightly warns about it.
pytestmark = pytest.mark.filterwarnings("ignore:The filter kernel:RuntimeWarning")


MODULES = [
    "e2llm.configuration_e2llm",
    "e2llm.modeling_eeg_encoder",
    "e2llm.modeling_e2llm",
    "e2llm.feature_extraction_e2llm",
    "e2llm.processing_e2llm",
    "e2llm.tokenization_e2llm",
    "e2llm.signal_e2llm",
    "e2llm.electrodes",
    "e2llm.answers",
    "e2llm.assembly",
    "e2llm.safe_output",
    "e2llm.atomic_files",
    "e2llm.rationale_e2llm",
    "e2llm.claim_constraints_e2llm",
    "e2llm.label_guidance_e2llm",
    "e2llm.folder_checks_e2llm",
    "e2llm.output_lock",
    "e2llm.hub_cards.own_files",
    "e2llm.training.cli_errors",
]


class _MarkdownDocTestParser(doctest.DocTestParser):
    """Examples sit in Markdown code fences (as in Transformers): drop the fence lines before parsing."""

    def parse(self, string, name="<string>"):
        return super().parse(re.sub(r"^\s*```\w*\s*$", "", string, flags=re.MULTILINE), name)


@pytest.mark.parametrize("module_name", MODULES)
def test_docstring_examples(module_name):
    module = importlib.import_module(module_name)
    finder = doctest.DocTestFinder(parser=_MarkdownDocTestParser())
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    tests = [t for t in finder.find(module, module_name) if t.examples]
    for test in tests:
        runner.run(test)
    results = runner.summarize(verbose=False)
    assert results.failed == 0, f"{results.failed} of {results.attempted} examples failed in {module_name}"


def test_the_main_classes_have_examples():
    finder = doctest.DocTestFinder(parser=_MarkdownDocTestParser())
    documented = {t.name.rsplit(".", 1)[-1] for name in MODULES for t in finder.find(importlib.import_module(name))
                  if t.examples}
    assert {"E2LLMConfig", "E2LLMEEGConfig", "E2LLMEEGEncoder", "E2LLMForConditionalGeneration",
            "E2LLMFeatureExtractor", "E2LLMProcessor", "build_offline_tokenizer"} <= documented
