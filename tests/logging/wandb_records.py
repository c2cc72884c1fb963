"""Read back what wandb wrote offline: the history rows of a `run-<id>.wandb` file.

The file is a log of protobuf `Record`s in 32 KiB blocks (a 7-byte file header, then per
chunk: crc32, length, type; a record may span blocks as FIRST/MIDDLE/LAST chunks). wandb 0.31
ships no Python reader for it, hence these few lines.
"""

import struct
from pathlib import Path

FILE_HEADER, BLOCK, CHUNK_HEADER = 7, 32768, 7
FULL, LAST = 1, 4


def records(path: Path) -> list:
    """Every `wandb_internal_pb2.Record` of a .wandb file, in order."""
    from wandb.proto import wandb_internal_pb2

    data = Path(path).read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a wandb run file"
    found, position, pending = [], FILE_HEADER, b""
    while position + CHUNK_HEADER <= len(data):
        left_in_block = BLOCK - position % BLOCK
        if left_in_block < CHUNK_HEADER:  # the block's tail is padding
            position += left_in_block
            continue
        _, length, kind = struct.unpack("<IHB", data[position : position + CHUNK_HEADER])
        if length == 0 and kind == 0:
            position += left_in_block
            continue
        pending += data[position + CHUNK_HEADER : position + CHUNK_HEADER + length]
        position += CHUNK_HEADER + length
        if kind in (FULL, LAST):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            found.append(record)
            pending = b""
    return found


def history(path: Path) -> dict[int, dict[str, str]]:
    """{step: {key: JSON text of the value}} of the history rows in a .wandb file."""
    rows = {}
    for record in records(path):
        if record.WhichOneof("record_type") == "history":
            items = {item.key or "/".join(item.nested_key): item.value_json for item in record.history.item}
            rows[record.history.step.num] = items
    return rows


def offline_runs(run_dir: Path) -> list[Path]:
    """The `run-<id>.wandb` files of the offline runs under `<run_dir>/wandb`, oldest first."""
    return sorted(Path(run_dir).glob("wandb/offline-run-*/run-*.wandb"))
