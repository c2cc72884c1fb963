"""Rollout engines: generate responses for a batch of prompts; receive new weights."""
