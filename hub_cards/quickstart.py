"""Renamed `e2llm.hub_cards.usage_code` (`quickstart` is the `e2llm quickstart` command's name). Re-exported for
`hub_cards/cards.py` (owner `hostile`, request filed); delete once it imports `usage_code` from there."""

from .usage_code import TEN_TWENTY, usage_code

quickstart_code = usage_code

__all__ = ["TEN_TWENTY", "quickstart_code"]
