"""Strict reading of tab-separated tables: every row has exactly the header's fields.

pandas silently shifts every column when the first data row has one field too many (it takes
the extra field as an index) and pads short rows; here either is an error naming the line.
Values are text, unquoted (the tables this project writes never hold tabs or line breaks).
"""
import pandas as pd


class TsvError(ValueError):
    pass


def read_tsv(path) -> pd.DataFrame:
    """The table at `path` as strings; blank lines are skipped. FileNotFoundError when missing,
    TsvError (one line naming the file and line) when malformed."""
    try:
        with open(path, encoding="utf-8", newline="") as f:
            text = f.read()
    except UnicodeDecodeError as error:
        raise TsvError(f"{path}: not UTF-8 text ({error})") from None
    lines = text.split("\n")
    if not lines or not lines[0].strip("\r"):
        raise TsvError(f"{path}: empty table (no header line)")
    header = lines[0].rstrip("\r").split("\t")
    rows = []
    for number, line in enumerate(lines[1:], start=2):
        line = line.rstrip("\r")
        if not line:
            continue
        fields = line.split("\t")
        if len(fields) != len(header):
            raise TsvError(f"{path}: line {number} has {len(fields)} fields, the header has "
                           f"{len(header)}")
        rows.append(fields)
    return pd.DataFrame(rows, columns=header, dtype=str) if rows else \
        pd.DataFrame({name: pd.Series(dtype=str) for name in header})
