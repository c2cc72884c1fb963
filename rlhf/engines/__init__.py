"""Training engines: forward/backward/step over a model, weights out, state in and out."""
