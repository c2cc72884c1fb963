"""Reward sources: rule-based verifiers, user functions and reward models, combined by weight."""
