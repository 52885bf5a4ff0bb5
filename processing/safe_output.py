"""Moved to `e2llm.safe_output` (the `e2llm` layer, so that `hub_cards` and the pipeline may use it too); this name
stays for the callers in `processing/` and `training/` until they import `e2llm.safe_output` directly."""

from e2llm.safe_output import (  # noqa: F401
    MANIFEST_FILE,
    MARKER_FILE,
    atomic_write,
    atomic_write_json,
    check_output_dir,
    check_output_file,
    is_e2llm_output,
    replace_dir,
    staged_dir,
    write_marker,
    write_output_file,
)

__all__ = ["MANIFEST_FILE", "MARKER_FILE", "atomic_write", "atomic_write_json", "check_output_dir",
           "check_output_file", "is_e2llm_output", "replace_dir", "staged_dir", "write_marker", "write_output_file"]
