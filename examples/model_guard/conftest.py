"""The example project's pytest configuration: this directory is the rootdir, so ``mguard``
imports without an install. The fimtheory plugin loads by its ``pytest11`` entry point once
fimtheory is installed (``-p properties.pytest_plugin`` loads it explicitly). Counterexamples
go to ``.fimtheory/counterexamples`` unless ``--fimtheory-counterexamples DIR``."""
