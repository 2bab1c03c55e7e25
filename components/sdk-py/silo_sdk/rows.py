"""SQL values and rows: Python values to the WIT `types.value` cases and row sets to dicts.
Pure Python: the WIT classes are passed in (`silo_sdk.store` passes the generated ones), so
the tests run without bindings.
"""


def value_case(value):
    """The `types.value` case for a Python value: `("null"|"integer"|"real"|"text"|"blob",
    value)`. `bool` is an integer (0/1); anything else is refused with `TypeError`."""
    if value is None:
        return ("null", None)
    if isinstance(value, bool):
        return ("integer", int(value))
    if isinstance(value, int):
        return ("integer", value)
    if isinstance(value, float):
        return ("real", value)
    if isinstance(value, str):
        return ("text", value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return ("blob", bytes(value))
    raise TypeError(f"cannot bind a {type(value).__name__} as an SQL value")


def plain(value):
    """A WIT value case as a Python value (`Value_Null` has no `value`: None)."""
    return getattr(value, "value", None)


def row_dicts(row_set):
    """Each row of a WIT `row-set` as a dict of column name to Python value."""
    columns = list(row_set.columns)
    return [dict(zip(columns, (plain(v) for v in row))) for row in row_set.rows]
