"""An example plugin: a user-defined claim declared with fimtheory's public Claim API and
registered through the ``fimtheory.claims`` entry point (see ``pyproject.toml``)."""
