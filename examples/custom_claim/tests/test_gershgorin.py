"""This project's claim, checked by fimtheory's pytest plugin.

With the package installed (``pip install -e .``) the claim is in fimtheory's registry
through the ``fimtheory.claims`` entry point and is checked by id; without it, the same
declaration is checked as an object. Either way the plugin runs ``fimtheory verify``'s
machinery: the true claim must verify, and its weakening must be falsified with a certified
counterexample (stored under ``.fimtheory/counterexamples``, replayable with ``fimtheory replay``).
"""

from custom_claim.claims import GERSHGORIN

from fimtheory.claim_api import REGISTRY
from properties.pytest_plugin import check

INSTALLED = GERSHGORIN.id in REGISTRY
TRUE_CLAIM = GERSHGORIN.id if INSTALLED else GERSHGORIN
WEAKENING = "CC-GERSHGORIN-diagonal" if INSTALLED else GERSHGORIN.weakening("CC-GERSHGORIN-diagonal")


@check(TRUE_CLAIM)
def test_gershgorin_bound_verifies(fimtheory_report):
    assert fimtheory_report.status == "verified"
    assert fimtheory_report.examples == fimtheory_report.examples_requested


@check(WEAKENING)
def test_diagonal_bound_is_falsified_with_a_certificate(fimtheory_report):
    # the plugin passes a weakening only when it found a violation and certified it
    assert fimtheory_report.status == "falsified"
