"""Model and tokenizer loading, and the tiny offline models used by tests and the quickstart."""
