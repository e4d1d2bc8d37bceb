"""The limits of the feature language, defined here and nowhere else.

Real definitions stay far below each of them: a definition file is a few kilobytes, an
expression nests a handful of levels, a feature reads a feature that reads one or two more.
They exist so that a hostile or generated file gets a located error (parser, loader, type
checker) rather than a RecursionError, an exhausted memory or a failure inside a target:
Python allows 200 nested parentheses in the online target's generated code, DuckDB an
expression depth of 1000, Spark's parser about as much. Every stage (parse, check, plan,
batch SQL, online code and its compile()) is tested at each limit (limits_test.py; one past
it in lang_test.py).
"""

# Bytes in one definition file (an imported file counts on its own).
MAX_FILE_BYTES = 1 << 20

# Nesting of one definition's expression: the whole expression is level 1, and each operand,
# branch, argument and `where` filter is one level below what holds it. The operators of a
# chain nest too (`a + b + c` is `(a + b) + c`: 3 levels), so this also bounds a chain's terms.
MAX_EXPR_DEPTH = 100

# Definitions reading definitions in a row: in `feature b = a + 1` and `feature c = b * 2`,
# c reads b, which reads a: a chain of 3.
MAX_FEATURE_CHAIN = 50

# Not a choice but the int type's range: ints are 64-bit in both targets, so int literals and
# window lengths in microseconds must fit.
MAX_INT = (1 << 63) - 1
