"""A small project whose per-sample scores and classifier are guarded by fimtheory: two
score functions (one correct, two deliberately buggy) and a torch classifier."""
