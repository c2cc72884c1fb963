"""Environments of multi-turn episodes: the protocol, the built-in environments and tools."""
