"""Roles, one class each (actor, critic, reference, reward models), the roles one process hosts
together, and how they are built from plain arguments."""
