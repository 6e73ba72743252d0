"""Behaviours the user types are regular expressions; none of them may hang the kernel.

Python's `re` cannot be interrupted: `^(\\w+\\s?)*$` on a 25-word answer backtracks for hours and
holds a core of a shared server. Every user-supplied pattern (API, app, sweep and discover
files) is therefore compiled and matched here with the `regex` package, which takes a time limit
(`timeout=`), and is checked before compiling for what even `regex` cannot bound: very long
patterns and counted repeats that nest into millions of copies (compiling
`((a{1000}){1000}){1000}` alone never ends).

A behaviour has `MATCH_SECONDS` for a whole table of responses; one that runs out raises
`PatternTimeout`, a sentence naming it, and the callers leave it out and keep the others.
"""

from __future__ import annotations

import re
import time
from typing import Any

import regex

MATCH_SECONDS = 1.0  # one behaviour's matching time over all responses of a table
MAX_PATTERN_CHARS = 2000
MAX_REPEATS = 10_000  # the product of nested counted repeats ({m,n}) a pattern may hold
_FLAGS = {re.IGNORECASE: regex.IGNORECASE, re.MULTILINE: regex.MULTILINE, re.DOTALL: regex.DOTALL,
          re.VERBOSE: regex.VERBOSE, re.ASCII: regex.ASCII}  # fmt: skip
_COUNTED = regex.compile(r"\{(\d*)(?:,(\d*))?\}")


class BehaviourLeftOut(RuntimeWarning):
    """A behaviour was left out of a table because its pattern ran out of time."""


class PatternTimeout(ValueError):
    """A behaviour's pattern ran out of its matching time (the message names it)."""

    def __init__(self, name: str, pattern: str, seconds: float) -> None:
        self.name, self.pattern = name, pattern
        super().__init__(
            f"behaviour {name!r}: the pattern {shorten(pattern)!r} took more than {seconds:g} s "
            "to match (nested repeats that backtrack, such as (a|aa)+$), so it was left out; "
            "the other behaviours count as usual. Write it without a repeat inside a repeat."
        )


def shorten(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def compile_pattern(spec: str | re.Pattern | regex.Pattern, name: str) -> regex.Pattern:
    """A user's behaviour as a `regex` pattern (re's flags carried over), or a ValueError
    whose message says what is wrong with it."""
    source, flags = _source(spec)
    if len(source) > MAX_PATTERN_CHARS:
        raise ValueError(f"behaviours: {name!r} is {len(source)} characters long; a behaviour "
                         f"pattern may have at most {MAX_PATTERN_CHARS}")  # fmt: skip
    copies = nested_repeats(source)
    if copies > MAX_REPEATS:
        raise ValueError(f"behaviours: {name!r} repeats into {copies:,} copies (counted repeats "
                         f"{{m,n}} multiply when nested; at most {MAX_REPEATS:,}): compiling it "
                         "would not end")  # fmt: skip
    try:
        return regex.compile(source, flags)
    except (regex.error, re.error, OverflowError) as err:
        raise ValueError(f"behaviours: {name!r} is not a valid regex ({err})") from err


def _source(spec: Any) -> tuple[str, int]:
    if isinstance(spec, str):
        return spec, 0
    if isinstance(spec, regex.Pattern):
        return spec.pattern, spec.flags & ~regex.VERSION0 & ~regex.UNICODE
    if isinstance(spec, re.Pattern):
        return spec.pattern, sum(v for k, v in _FLAGS.items() if spec.flags & k)
    raise TypeError(f"expected a regex, got {type(spec).__name__}")


def nested_repeats(source: str) -> int:
    """The largest product of counted repeats (`{m,n}`) along one nesting path of groups: the
    number of copies a compiler may unroll. Escapes and character classes count as atoms."""
    stack, i = [1], 0  # per open group: the most copies of anything inside it so far
    while i < len(source):
        char = source[i]
        if char == "\\":
            i += 2
            continue
        if char == "[":
            i = _class_end(source, i)
            continue
        if char == "(":
            stack.append(1)
        elif char == ")" and len(stack) > 1:
            inner = stack.pop()
            stack[-1] = max(stack[-1], inner * _repeat_at(source, i + 1))
        elif char == "{":
            stack[-1] = max(stack[-1], _repeat_at(source, i))
        i += 1
    return max(stack)


def _repeat_at(source: str, i: int) -> int:
    found = _COUNTED.match(source, i)
    if not found:
        return 1
    low, high = found.group(1), found.group(2)
    bound = high if high else low
    return int(bound) if bound else 1


def _class_end(source: str, i: int) -> int:
    j = i + 1
    if j < len(source) and source[j] == "^":
        j += 1
    if j < len(source) and source[j] == "]":
        j += 1
    while j < len(source) and source[j] != "]":
        j += 2 if source[j] == "\\" else 1
    return j + 1


class Matcher:
    """A compiled behaviour with a time budget shared by every text it is asked about."""

    def __init__(self, spec: Any, name: str, seconds: float = MATCH_SECONDS) -> None:
        self.pattern = compile_pattern(spec, name)
        self.name, self.seconds, self.spent = name, seconds, 0.0

    def search(self, text: str, **options: Any) -> Any:
        """`pattern.search(text)` within what is left of the budget, else `PatternTimeout`."""
        left = self.seconds - self.spent
        if left <= 0:
            raise PatternTimeout(self.name, self.pattern.pattern, self.seconds)
        started = time.perf_counter()
        try:
            return self.pattern.search(text, timeout=left, concurrent=True, **options)
        except TimeoutError as err:
            raise PatternTimeout(self.name, self.pattern.pattern, self.seconds) from err
        finally:
            self.spent += time.perf_counter() - started

    def __call__(self, text: str) -> bool:
        return self.search(text) is not None
