"""README's figures are the committed results: its rendered regions equal what
``scripts/render_readme.py`` produces from the files in ``results/`` (and the stored
counterexamples, ``benchmarks/results.json``), and no table in its Results section lies outside
a rendered region.

If this fails after a new result was committed, run ``python scripts/render_readme.py``.
"""

from __future__ import annotations

import decimal
import importlib.util
import json
import os
import shutil

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _load_renderer(root: str = ROOT):
    spec = importlib.util.spec_from_file_location("render_readme", os.path.join(ROOT, "scripts", "render_readme.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    mod.ROOT = root
    return mod


R = _load_renderer()


def _readme() -> str:
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as fh:
        return fh.read()


@pytest.mark.parametrize("rel", sorted(R.FILES))
def test_rendered_regions_equal_the_committed_results(rel):
    with open(os.path.join(ROOT, rel), encoding="utf-8") as fh:
        text = fh.read()
    rendered = R.render(text)
    if rendered != text:
        import difflib

        diff = "".join(difflib.unified_diff(text.splitlines(True), rendered.splitlines(True), rel, "rendered", n=1))
        pytest.fail(f"{rel} differs from what is committed; run python scripts/render_readme.py\n" + diff[:6000])


def test_every_source_has_a_region_and_every_region_a_source():
    seen = []
    for rel, expected in R.FILES.items():
        with open(os.path.join(ROOT, rel), encoding="utf-8") as fh:
            names = [n for n, _, _ in R.regions(fh.read())]
        assert len(names) == len(set(names)), f"{rel}: a region appears twice: {names}"
        assert set(names) == set(expected), f"{rel}: regions {names}, expected {expected}"
        seen += names
    assert set(seen) == set(R.RENDERERS) == set(R.SOURCES)


def test_no_table_in_results_outside_a_region():
    text = _readme()
    lines = text.split("\n")
    start = next(i for i, line in enumerate(lines) if line.startswith("## Results"))
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    inside = set()
    for _, a, b in R.regions(text):
        inside.update(range(a, b))
    stray = [i + 1 for i in range(start, end) if lines[i].lstrip().startswith("|") and i not in inside]
    assert not stray, f"README lines {stray} hold a table outside a rendered results region"


def _copy_sources(tmp_path):
    for rel in ("results", "tests/counterexamples", "benchmarks/results.json"):
        src = os.path.join(ROOT, rel)
        dst = tmp_path / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        if os.path.isdir(src):
            shutil.copytree(src, dst)
        elif os.path.exists(src):
            shutil.copy(src, dst)


def test_a_changed_result_changes_the_rendering(tmp_path):
    """The comparison can fail: change one committed number and the rendered README differs."""
    _copy_sources(tmp_path)
    path = tmp_path / "results" / "verify-quick.json"
    if not path.exists():
        pytest.skip("results/verify-quick.json is not committed yet")
    doc = json.loads(path.read_text())
    doc["claims"][0]["examples"] = 12345
    path.write_text(json.dumps(doc))
    moved = _load_renderer(str(tmp_path))
    text = _readme()
    assert "12345" in moved.render(text) and "12345" not in R.render(text)


def test_missing_source_renders_as_not_yet_run(tmp_path):
    empty = _load_renderer(str(tmp_path))
    out = "\n".join(empty.render_region("verify-thorough"))
    assert out.startswith("> **Not yet run.**") and "fimtheory verify --profile thorough" in out


def test_malformed_markers_are_refused():
    with pytest.raises(R.RenderError, match="never closed"):
        R.regions("<!-- results:verify-quick -->\ntext\n")
    with pytest.raises(R.RenderError, match="without an opening"):
        R.regions("text\n<!-- /results -->\n")
    with pytest.raises(R.RenderError, match="unknown results region"):
        R.render("<!-- results:nope -->\n<!-- /results -->\n")


@pytest.mark.parametrize(
    "value",
    ["-1e+0", "-5e-1", "-9.99999999999999958678674528886e-33", "1.23456789e5", "-4.66050487177451119e-1", "7"],
)
def test_shortened_enclosure_contains_the_stored_one(value):
    d = decimal.Decimal(value)
    lo = decimal.Decimal(R._outward(value, decimal.ROUND_FLOOR))
    hi = decimal.Decimal(R._outward(value, decimal.ROUND_CEILING))
    assert lo <= d <= hi
    assert hi - lo <= abs(d) * decimal.Decimal("1e-5")
