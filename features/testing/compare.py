"""The parity contract's comparison: exact for counts, distinct counts, min, max, last, bools,
strings and integer sums/averages; 1e-9 relative on other floats."""
from __future__ import annotations

import math


def same(a, b, exact_float: bool = False) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        if exact_float or math.isnan(a) or math.isnan(b):
            return a == b or (math.isnan(a) and math.isnan(b))
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=0.0)
    return a == b and type(a) is type(b)


def differences(got: list[dict], want: list[dict], exact_columns=(), limit: int = 20) -> list[str]:
    out = []
    if len(got) != len(want):
        out.append(f"{len(got)} rows against {len(want)}")
    for g, w in zip(got, want):
        if g.get("seq") != w.get("seq"):
            out.append(f"row order differs: seq {g.get('seq')} against {w.get('seq')}")
            break
        for k in w:
            if not same(g.get(k), w[k], k in exact_columns):
                out.append(f"seq {w['seq']} {k}: {g.get(k)!r} against {w[k]!r}")
                if len(out) >= limit:
                    return out
    return out


def assert_rows_equal(got: list[dict], want: list[dict], exact_columns=()) -> None:
    diffs = differences(got, want, exact_columns)
    assert not diffs, "\n".join(diffs)
