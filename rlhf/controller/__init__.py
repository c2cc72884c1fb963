"""The single controller: builds the roles from a recipe and runs the RL loop."""
