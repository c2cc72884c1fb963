"""Running user code (reward functions today, environments next) where a deadline can stop it.

User code can do anything to the process it runs in: cancel our timers with its own
`signal.alarm`, swallow our timeout exception with a bare `except:`, call `sys.exit`, spin in
C code that never returns to Python, or parse `sys.argv` at import. Inside the driver any of
these can hang or end a run. :class:`~rlhf.usercode.process.UserCodeProcess` runs it in a
child process instead, and kills that process when a call runs past its deadline.
"""
