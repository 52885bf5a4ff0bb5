"""Packaging: setup.cfg maps every package folder, declares the data files, extras and the console script."""

from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _setup_cfg() -> configparser.ConfigParser:
    config = configparser.ConfigParser(interpolation=None)
    config.read(ROOT / "setup.cfg")
    return config


def _lines(value: str) -> list[str]:
    return [line.strip() for line in value.strip().splitlines() if line.strip()]


def test_every_package_folder_is_listed():
    options = _setup_cfg()["options"]
    mapping = dict(line.replace(" ", "").split("=") for line in _lines(options["package_dir"]))
    listed = set(_lines(options["packages"]))
    found = set()
    for package, folder in mapping.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            relative = init.parent.relative_to(ROOT / folder)
            found.add(".".join([package, *relative.parts]))
    assert found <= listed, f"packages missing from setup.cfg: {sorted(found - listed)}"


def test_package_data_is_declared():
    data = _setup_cfg()["options.package_data"]
    assert "configs/*.yaml" in data["e2llm.training"] and "configs/accelerate/*.yaml" in data["e2llm.training"]
    assert "templates/*.md" in data["e2llm.hub_cards"]


def test_extras_and_console_script():
    config = _setup_cfg()
    extras = config["options.extras_require"]
    assert set(extras) == {"eeg", "train", "gpu", "serve", "test", "dev"}
    assert "vllm" in extras["serve"]
    assert "flash-attn" in config["options.extras_require"]["gpu"]
    assert _lines(config["options.entry_points"]["console_scripts"]) == ["e2llm = e2llm.training.cli:main"]
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert "[project]" not in pyproject  # it would make setuptools ignore setup.cfg's metadata


def test_constraints_pin_what_setup_cfg_requires():
    pins = dict(line.split("==") for line in _lines((ROOT / "constraints.txt").read_text()) if not line.startswith("#"))
    assert pins["torch"] == "2.13.0"
    for requirement in _lines(_setup_cfg()["options"]["install_requires"]):
        name = requirement.split(">")[0].split("<")[0].split("=")[0]
        assert name in pins, f"{name} is required but not pinned in constraints.txt"


def test_e2llm_console_script_help():
    script = Path(sys.executable).parent / "e2llm"
    command = [str(script)] if script.exists() else [shutil.which("e2llm") or "e2llm"]
    result = subprocess.run([*command, "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    for name in ("quickstart", "init", "prepare", "train", "evaluate", "predict", "push"):
        assert name in result.stdout
