"""Rollout: engines that generate responses for a batch of prompts and receive new weights, and
rollout sources, where the RL loop takes its scored batches from."""
