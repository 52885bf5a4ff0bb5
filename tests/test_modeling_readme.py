"""The README's Python example runs as written (in a temporary folder, offline)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def _python_blocks() -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", README.read_text(encoding="utf-8"), flags=re.MULTILINE | re.DOTALL)


@pytest.mark.filterwarnings("ignore:The filter kernel:RuntimeWarning")
def test_readme_example_runs(tmp_path, monkeypatch, capsys):
    blocks = _python_blocks()
    assert blocks, "README.md has no ```python example"
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "__readme__"}
    for block in blocks:
        exec(compile(block, str(README), "exec"), namespace)
    printed = capsys.readouterr().out
    assert "ParsedAnswer(" in printed and "happiness" in printed
    probs = namespace["probs"]
    assert abs(float(probs.sum()) - 1.0) < 1e-5
    assert (tmp_path / "tiny-e2llm" / "model.safetensors").exists()


def test_readme_names_only_real_extras_and_commands():
    text = README.read_text(encoding="utf-8")
    setup_cfg = (README.parent / "setup.cfg").read_text(encoding="utf-8")
    extras = set(re.findall(r"^(\w+) =\s*$", setup_cfg.split("[options.extras_require]")[1].split("[")[0], re.MULTILINE))
    for extra in re.findall(r'pip install -e "\.\[([\w,]+)\]"', text):
        assert set(extra.split(",")) <= extras, extra
    from e2llm.training.cli import COMMANDS

    for command in re.findall(r"^e2llm (\w+)", text, flags=re.MULTILINE):
        assert command in COMMANDS, command
