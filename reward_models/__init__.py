"""Outcome and process reward model scorers and their training (see issue 4)."""
