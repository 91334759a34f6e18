"""README's Python examples run and assert (doc examples are tests)."""

from __future__ import annotations

import pathlib
import re

import pytest

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)


def test_readme_has_examples():
    assert len(BLOCKS) >= 2


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_example_runs(index):
    exec(compile(BLOCKS[index], f"README.md[python block {index}]", "exec"), {"__name__": "readme_example"})


def test_readme_states_the_two_setup_commands_that_ci_runs():
    ci = (README.parent / ".ci" / "run").read_text()
    assert "./install.sh" in ci and "python3 -m pytest" in ci
    text = README.read_text(encoding="utf-8")
    assert "./install.sh" in text and "python3 -m pytest" in text
