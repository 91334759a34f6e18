"""The Python examples of docs/claim_api.md's "Subjects" section run and assert (doc examples
are tests); the torch example is skipped without torch."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[1] / "docs" / "claim_api.md"


def _section_blocks():
    text = DOC.read_text(encoding="utf-8")
    start = text.index("\n## Subjects\n")
    end = text.index("\n## ", start + 1)
    return re.findall(r"```python\n(.*?)```", text[start:end], flags=re.S)


BLOCKS = _section_blocks()


def test_the_subjects_section_has_a_score_and_a_torch_example():
    assert len(BLOCKS) == 2
    assert "score_function" in BLOCKS[0] and "torch_model" in BLOCKS[1]


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_subjects_example_runs(index):
    code = BLOCKS[index]
    if "import torch" in code and importlib.util.find_spec("torch") is None:
        pytest.skip("needs torch")
    exec(compile(code, f"docs/claim_api.md[subjects block {index}]", "exec"), {"__name__": "claim_api_doc"})
