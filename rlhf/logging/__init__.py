"""Run outputs: metrics.jsonl and the console (progress bar, metric lines)."""
