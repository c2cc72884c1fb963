"""Rows of a local data file: JSON lines (.jsonl), JSON (.json: JSON lines or one array of
objects), CSV (.csv) and tab-separated (.tsv) text, Parquet (.parquet).

Text files must be UTF-8 (a UTF-8 byte-order mark is fine). A file in another encoding, a
line that is not JSON, a CSV row with more or fewer values than the header: each stops with
a ConfigError naming the file, the row or line (1-based) and what to do. CSV and TSV values are text,
exactly as written (no guessing of numbers or dates): `ground_truth` 007 stays '007'.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
from pathlib import Path

from rlhf.config.errors import ConfigError

FORMATS = (".jsonl", ".json", ".csv", ".tsv", ".parquet")
"""The suffixes of the local files :func:`read_rows` reads."""

_WIDE_BOMS = {
    "UTF-32 (little-endian)": codecs.BOM_UTF32_LE,  # before UTF-16 LE: it starts with the same two bytes
    "UTF-32 (big-endian)": codecs.BOM_UTF32_BE,
    "UTF-16 (little-endian)": codecs.BOM_UTF16_LE,
    "UTF-16 (big-endian)": codecs.BOM_UTF16_BE,
}


def is_local_data_file(path: str) -> bool:
    """True when `path` should be read as a local file: it has one of the `FORMATS` suffixes,
    or it is an existing file (whose format :func:`read_rows` then checks)."""
    return Path(path).suffix.lower() in FORMATS or Path(path).is_file()


def read_rows(path: Path, key: str) -> list[dict]:
    """The rows (dicts) of the local file `path`, in file order. `key` is the recipe key that
    named the file (e.g. 'data.train.path'), the start of every error message."""
    if not path.is_file():
        raise ConfigError(f"{key}: file {str(path)!r} does not exist")
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        return _parquet_rows(path, key)
    if suffix not in FORMATS:
        raise ConfigError(
            f"{key}: {str(path)!r} is a {suffix or 'suffix-less'} file; local data files may be {', '.join(FORMATS)} "
            f"(convert it to one of them, or name a Hugging Face dataset)"
        )
    text = _utf8_text(path, key)
    if suffix in (".csv", ".tsv"):
        return _delimited_rows(text, path, key, "\t" if suffix == ".tsv" else ",")
    if suffix == ".json" and text.lstrip().startswith("["):
        return _json_array_rows(text, path, key)
    return _json_lines_rows(text, path, key)


def _utf8_text(path: Path, key: str) -> str:
    """The file's text; a ConfigError naming the encoding problem and its row otherwise."""
    data = path.read_bytes()
    convert = f"convert it to UTF-8 (e.g. `iconv -f <its encoding> -t UTF-8 {path} > out{path.suffix}`)"
    for name, bom in _WIDE_BOMS.items():
        if data.startswith(bom):
            raise ConfigError(
                f"{key}: {str(path)!r} line 1 starts with a {name} byte-order mark: the file is {name.split()[0]} encoded, not UTF-8; "
                f"{convert.replace('<its encoding>', name.split()[0])}"
            )
    if b"\x00" in data:
        row = data.count(b"\n", 0, data.index(b"\x00")) + 1
        raise ConfigError(f"{key}: {str(path)!r} line {row} holds NUL bytes: the file is probably UTF-16 or UTF-32 encoded; {convert}")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        row = data.count(b"\n", 0, error.start) + 1
        column = error.start - (data.rfind(b"\n", 0, error.start) + 1) + 1
        raise ConfigError(
            f"{key}: {str(path)!r} line {row}, byte {column} (0x{data[error.start]:02x}) is not UTF-8; {convert}"
        ) from None


def _json_lines_rows(text: str, path: Path, key: str) -> list[dict]:
    rows = []
    for line_number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            raise ConfigError(f"{key}: {path}:{line_number} is not valid JSON ({error.msg}); every line must hold one JSON object") from None
        if not isinstance(row, dict):
            raise ConfigError(f"{key}: {path}:{line_number} is not a JSON object (a row is {{\"field\": value, ...}})")
        rows.append(row)
    return rows


def _json_array_rows(text: str, path: Path, key: str) -> list[dict]:
    try:
        rows = json.loads(text)
    except json.JSONDecodeError as error:
        raise ConfigError(f"{key}: {path}:{error.lineno} is not valid JSON ({error.msg})") from None
    for number, row in enumerate(rows, start=1):
        if not isinstance(row, dict):
            raise ConfigError(f"{key}: {str(path)!r} row {number} is not a JSON object (a row is {{\"field\": value, ...}})")
    return rows


def _delimited_rows(text: str, path: Path, key: str, delimiter: str) -> list[dict]:
    """CSV / TSV rows: the first line names the columns; every value is text."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    try:
        records = [record for record in reader if record]
    except csv.Error as error:
        raise ConfigError(f"{key}: {str(path)!r} line {reader.line_num} is not valid {path.suffix[1:].upper()} ({error})") from None
    if not records:
        return []
    header, body = records[0], records[1:]
    duplicates = sorted({name for name in header if header.count(name) > 1})
    if duplicates or any(not name.strip() for name in header):
        raise ConfigError(f"{key}: the header (first line) of {str(path)!r} must name every column once (columns: {header}); rename or drop the clashing or empty ones")
    for number, record in enumerate(body, start=1):
        if len(record) != len(header):
            raise ConfigError(
                f"{key}: {str(path)!r} row {number} has {len(record)} values but the header names {len(header)} columns; "
                f"quote values that contain {delimiter!r} and give every row one value per column"
            )
    return [dict(zip(header, record)) for record in body]


def _parquet_rows(path: Path, key: str) -> list[dict]:
    import datasets

    try:
        loaded = datasets.load_dataset("parquet", data_files=str(path), split="train")
    except Exception as error:  # datasets and pyarrow raise many types; the message is what matters
        raise ConfigError(f"{key}: could not read the Parquet file {str(path)!r}: {' '.join(str(error).split())}") from None
    return [dict(row) for row in loaded]
