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


@pytest.mark.parametrize("name", R.FILES[R.README])
def test_every_readme_region_without_its_source_says_not_yet_run(tmp_path, name):
    empty = _load_renderer(str(tmp_path))
    out = "\n".join(empty.render_region(name))
    assert out.startswith("> **Not yet run.**"), out[:200]


def _set(doc, path, value):
    for key in path[:-1]:
        doc = doc[key]
    doc[path[-1]] = value


@pytest.mark.parametrize(
    "rel, path, value",
    [
        ("results/paper-data.json", ("figures", 0, "recomputed"), 12345.0),
        ("results/eq1-study-smollm2-quick.json", ("summary", "reference", "steps"), 12345),
        (
            "results/eq1-study-byte-lm-full.json",
            ("summary", "reference", "eq1_vs_lambda_softmax", "max_ratio"),
            12345,
        ),
        ("results/check-models-smollm2-quick-time.json", ("max_rss_kbytes",), 12345),
        ("results/verify-thorough-sharp-s3l.json", ("claims", 0, "examples"), 12345),
        ("results/sharp-conjecture.json", ("worst n>=3", "ratio"), 12345.0),
        ("results/sharp-critical-scale.json", ("sharp_over_old", "median"), 12345),
    ],
)
def test_a_changed_result_of_a_new_region_changes_the_rendering(tmp_path, rel, path, value):
    """Each region added for the sharp bounds, the companion data, Eq. 1 and SmolLM2's timing
    follows its committed file: change one number there and the rendered README differs."""
    _copy_sources(tmp_path)
    f = tmp_path / rel
    if not f.exists():
        pytest.skip(f"{rel} is not committed yet")
    doc = json.loads(f.read_text())
    _set(doc, path, value)
    f.write_text(json.dumps(doc))
    moved = _load_renderer(str(tmp_path))
    text = _readme()
    assert "12345" in moved.render(text) and "12345" not in R.render(text)
