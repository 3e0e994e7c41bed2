"""JSON from untrusted sources, parsed without letting its nesting exhaust the C stack.

CPython's JSON decoder recurses in C once per nested array or object. It raises `RecursionError`
at the interpreter's recursion limit, but only if the C stack lasts that long: with a deep
enough Python stack already in use, ``[[[[...`` a thousand levels deep crashes the process with
a segmentation fault instead. `loads` measures the nesting first (in NumPy, outside string
literals) and refuses text deeper than `MAX_DEPTH` with an ordinary `json.JSONDecodeError`, so
every caller's existing handler names the error.
"""

from __future__ import annotations

import json
import re
from typing import Any

import numpy as np

MAX_DEPTH = 64  # deepest nesting accepted; every format of this project needs at most 5
# A JSON string literal (escapes included), or an unterminated one running to the end.
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"?', re.DOTALL)
_STEP = np.zeros(256, dtype=np.int8)  # UTF-8 byte -> nesting change (brackets are ASCII)
_STEP[[ord("["), ord("{")]] = 1
_STEP[[ord("]"), ord("}")]] = -1


def nesting_depth(text: str) -> int:
    """The deepest nesting of arrays and objects in `text`, string literals skipped.

    Exact for valid JSON. For malformed text it is at least the depth a left-to-right parser
    reaches before it stops, so it is a safe bound to check before parsing.
    """
    outside = _STRING.sub("", text).encode("utf-8", "surrogatepass")
    steps = _STEP[np.frombuffer(outside, dtype=np.uint8)]
    return int(np.cumsum(steps, dtype=np.int32).max(initial=0))


def loads(text: str, *, max_depth: int = MAX_DEPTH, **kwargs: Any) -> Any:
    """`json.loads` for untrusted text, refusing deep nesting before the parser sees it.

    Parameters
    ----------
    text
        The JSON text (decode bytes first, with the encoding the format prescribes).
    max_depth
        Deepest nesting of arrays and objects accepted.
    **kwargs
        Passed to `json.loads` (``object_pairs_hook``, ``parse_constant``, ...).

    Returns
    -------
    Any
        The parsed value.

    Raises
    ------
    json.JSONDecodeError
        If the text is not JSON, or nests deeper than `max_depth`.
    """
    # Fewer brackets than the limit cannot nest deeper than it: skip the scan.
    if text.count("[") + text.count("{") > max_depth and (depth := nesting_depth(text)) > max_depth:
        raise json.JSONDecodeError(f"nesting depth {depth} exceeds {max_depth}", text, 0)
    return json.loads(text, **kwargs)
