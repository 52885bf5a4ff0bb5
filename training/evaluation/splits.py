"""Moved to `e2llm.processing.splits` (splits are made in one place). This module only re-exports those names for
the evaluation modules and tests that still import them from here (owner `explain`: see
/work/coord/requests/explain.md); delete it once they import from `e2llm.processing.splits`."""

from e2llm.processing.splits import (
    SPLIT_ALIASES,
    SPLITS,
    SplitIndices,
    SplitSpec,
    n_folds,
    resolve_split,
    select,
)

__all__ = ["SPLITS", "SPLIT_ALIASES", "SplitIndices", "SplitSpec", "n_folds", "resolve_split", "select"]
