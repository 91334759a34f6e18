"""A small project whose numerics are guarded by fimtheory: two rounding rules and two λ_max
engines, one correct and one deliberately buggy of each."""
