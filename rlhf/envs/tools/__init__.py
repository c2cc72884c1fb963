"""Tools a multi-turn agent may call: `calculator` (safe arithmetic) and `python` (untrusted code
in a sandboxed subprocess), and the parser of tool calls in an action's text."""
