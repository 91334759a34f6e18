"""The example project's pytest configuration.

The fimtheory plugin is loaded by its ``pytest11`` entry point once fimtheory is installed;
``-p properties.pytest_plugin`` loads it explicitly (both together are fine). Counterexamples
are written to ``.fimtheory/counterexamples`` here unless ``--fimtheory-counterexamples DIR``.
"""
