"""e2llm.hub_cards: model and dataset cards, self-contained Hub export, push."""
