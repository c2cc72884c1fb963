"""Roles, one class each: actor (policy training), ref (frozen reference)."""
