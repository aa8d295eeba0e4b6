"""Tab-separated tables, in the one dialect every table of this project is read in.

The dialect: UTF-8 text; lines end with `\\n` (a `\\r` before it is dropped); the first line is the
header; fields are separated by tabs and never quoted (the tables this project writes never hold
tabs or line breaks in a value); blank lines are skipped. `read_tsv` and `read_tsv_chunks` also
require every row to have exactly the header's fields: pandas silently shifts every column when
the first data row has one field too many (it takes the extra field as an index) and pads short
rows; here either is an error naming the line. `tsv_lines` is the dialect alone, for a table
whose rows are wider than its header (MTG-Jamendo's trailing tag columns).
"""
from collections.abc import Iterator
from pathlib import Path

import pandas as pd


class TsvError(ValueError):
    """A table that is not in the dialect; `str()` names the file and, where one, the line."""

    def __init__(self, path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


def tsv_lines(path) -> Iterator[tuple[int, list[str]]]:
    """(line number, fields) of the header (line 1, even when blank) and of every non-blank line
    after it, read line by line. FileNotFoundError when missing; TsvError when not UTF-8."""
    try:
        with open(path, encoding="utf-8", newline="\n") as f:
            for number, line in enumerate(f, start=1):
                line = line.removesuffix("\n").rstrip("\r")
                if line or number == 1:
                    yield number, line.split("\t")
    except UnicodeDecodeError:
        raise TsvError(path, f"not UTF-8 text ({_decode_error(path)})") from None


def _decode_error(path) -> UnicodeDecodeError:
    """The error of decoding the whole file, so that its byte position counts from the file's
    start (a line-by-line read decodes in blocks)."""
    try:
        Path(path).read_bytes().decode("utf-8")
    except UnicodeDecodeError as error:
        return error
    raise AssertionError(f"{path} decodes as UTF-8 when read whole")


def _rows(path) -> tuple[list[str], Iterator[list[str]]]:
    """The header and an iterator of the rows, each checked to have the header's fields."""
    lines = tsv_lines(path)
    first = next(lines, None)
    if first is None or first[1] == [""]:
        raise TsvError(path, "empty table (no header line)")
    header = first[1]

    def rows():
        for number, fields in lines:
            if len(fields) != len(header):
                raise TsvError(path, f"line {number} has {len(fields)} fields, the header has "
                                     f"{len(header)}")
            yield fields
    return header, rows()


def _frame(rows: list[list[str]], header: list[str]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=header, dtype=str) if rows else \
        pd.DataFrame({name: pd.Series(dtype=str) for name in header})


def read_tsv(path) -> pd.DataFrame:
    """The table at `path` as strings; blank lines are skipped. FileNotFoundError when missing,
    TsvError (one line naming the file and line) when malformed."""
    header, rows = _rows(path)
    return _frame(list(rows), header)


def read_tsv_chunks(path, rows: int) -> Iterator[pd.DataFrame]:
    """`read_tsv` in pieces of at most `rows` rows (none for a table without rows), so that a
    large table is never whole in memory."""
    header, lines = _rows(path)
    chunk = []
    for fields in lines:
        chunk.append(fields)
        if len(chunk) == rows:
            yield _frame(chunk, header)
            chunk = []
    if chunk:
        yield _frame(chunk, header)
