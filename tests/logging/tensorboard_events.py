"""Read back tensorboard event files the way TensorBoard's own backend does (the plugin event
accumulator, which applies the purge of a restarted writer)."""

from pathlib import Path


def load(logdir: Path):
    from tensorboard.backend.event_processing.plugin_event_accumulator import EventAccumulator

    events = EventAccumulator(str(logdir), size_guidance={"tensors": 0})  # 0: keep every event
    events.Reload()
    return events


def scalars(logdir: Path, tag: str) -> list[tuple[int, float]]:
    """(step, value) of every scalar event of `tag`, in step order."""
    from tensorboard.util import tensor_util

    return [(event.step, tensor_util.make_ndarray(event.tensor_proto).item()) for event in load(logdir).Tensors(tag)]


def texts(logdir: Path, tag: str) -> list[tuple[int, str]]:
    """(step, text) of every text event of `tag` (add_text stores it under `<tag>/text_summary`)."""
    return [(event.step, event.tensor_proto.string_val[0].decode()) for event in load(logdir).Tensors(f"{tag}/text_summary")]
