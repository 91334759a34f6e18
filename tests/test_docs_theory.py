"""docs/theory.md, the spec, covers every claim and weakening of the registry, and every path and
code reference it cites exists in this repository (so the spec cannot silently go stale when
code moves). No committed text cites a path outside the repository."""

from __future__ import annotations

import importlib
import pathlib
import re
import subprocess

import pytest

from fimtheory.claims import REGISTRY

ROOT = pathlib.Path(__file__).resolve().parents[1]
THEORY = (ROOT / "docs" / "theory.md").read_text(encoding="utf-8")
TICKED = re.findall(r"`([^`\n]+)`", THEORY)
PACKAGES = ("fimtheory", "properties", "symbolic", "torch_checks")
DOTTED = re.compile(r"^((?:" + "|".join(PACKAGES) + r")(?:\.[A-Za-z_][A-Za-z0-9_]*)+)")


@pytest.mark.parametrize("claim_id", list(REGISTRY))
def test_every_claim_has_a_section_with_its_weakenings(claim_id):
    anchor = f'<a id="claim-{claim_id}"></a>'
    assert anchor in THEORY, f"docs/theory.md has no section for claim {claim_id}"
    section = THEORY.split(anchor, 1)[1].split('<a id="', 1)[0]
    for w in REGISTRY[claim_id].weakenings:
        assert w.id in section, f"the section of {claim_id} does not state its weakening {w.id}"


def _paths():
    out = set()
    for t in TICKED:
        t = t.split()[0]
        if re.match(r"^(tests|docs|fimtheory|properties|symbolic|torch_checks|scripts|benchmarks|results)/", t):
            out.add(t)
    for t in re.findall(r"\]\(([^)#]+)\)", THEORY):
        if not t.startswith(("http://", "https://")):
            out.add(str(pathlib.Path("docs") / t))
    return sorted(out)


@pytest.mark.parametrize("rel", _paths())
def test_cited_paths_exist(rel):
    assert (ROOT / rel).exists(), f"docs/theory.md cites {rel}, which does not exist"


def _dotted():
    refs = set()
    for t in TICKED:
        m = DOTTED.match(t)
        if m and "/" not in t:
            refs.add(m.group(1))
    return sorted(refs)


@pytest.mark.parametrize("ref", _dotted())
def test_cited_code_resolves(ref):
    parts = ref.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError as exc:
            if exc.name and exc.name.split(".")[0] in PACKAGES:
                continue
            pytest.skip(f"{ref} needs the optional package {exc.name}")
        break
    else:
        pytest.fail(f"no module of {ref} imports")
    for attr in parts[cut:]:
        assert hasattr(obj, attr), f"docs/theory.md cites {ref}, but {attr!r} does not exist"
        obj = getattr(obj, attr)


# The sibling folder the spec used to live in, spelled so that this file does not cite it.
OUTSIDE = "shared" + "/"


def _source_files() -> list[str]:
    """The tracked .py/.md/.toml files (git), or — outside a git checkout, e.g. an unpacked
    archive — every such file under the root except build, cache and environment folders."""
    try:
        out = subprocess.run(
            ["git", "ls-files", "*.py", "*.md", "*.toml"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.split()
        if out:
            return out
    except (OSError, subprocess.CalledProcessError):
        pass
    skip = {".git", ".venv", "venv", "build", "dist", ".hypothesis", "mutants", "__pycache__", ".ruff_cache"}
    return sorted(
        str(p.relative_to(ROOT))
        for ext in ("*.py", "*.md", "*.toml")
        for p in ROOT.rglob(ext)
        if not (set(p.relative_to(ROOT).parts) & skip) and not any(x.endswith(".egg-info") for x in p.parts)
    )


def test_no_committed_text_cites_a_path_outside_the_repository():
    files = _source_files()
    bad = [f for f in files if (ROOT / f).exists() and OUTSIDE in (ROOT / f).read_text(encoding="utf-8")]
    assert not bad, f"these files cite a path outside the repository ({OUTSIDE}): {bad}"


def _committed_texts():
    for f in _source_files():
        if (ROOT / f).exists():
            yield f, (ROOT / f).read_text(encoding="utf-8")


# Spelled in pieces so that this file does not match itself.
OLD_SPEC = "THEORY" + ".md"
PROCESS_WORDS = re.compile("iss" + r"ue ?[0-9]|#[0-9]+ ")


def test_no_committed_text_cites_the_old_spec_file():
    bad = [f for f, text in _committed_texts() if OLD_SPEC in text]
    assert not bad, f"these files cite {OLD_SPEC}; the spec is docs/theory.md: {bad}"


def test_no_issue_numbers_in_code_or_docs():
    bad = [
        f"{f}:{i + 1}"
        for f, text in _committed_texts()
        if not f.endswith(".toml")
        for i, line in enumerate(text.split("\n"))
        if PROCESS_WORDS.search(line)
    ]
    assert not bad, f"code and docs speak of the project, not of issue numbers: {bad}"
