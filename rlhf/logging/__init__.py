"""Run outputs: the logger interface (:mod:`rlhf.logging.base`), its backends (console,
metrics.jsonl / samples.jsonl, tensorboard, wandb, mlflow) and the factory that builds the
ones `trainer.loggers` selects."""
