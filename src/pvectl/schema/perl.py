"""Perl's view of a decoded parameter, which JSONSchema.pm's checks rely on: how a scalar prints, what
`ref()` says, what is true, how `qr//` patterns and numbers match; and how a check reports an error
(`die` texts, `add_error`)."""

from __future__ import annotations

import functools
import re
from typing import Any

from .urlencoded import RepeatedValue


JSON_BOOL_CLASS = "JSON::PP::Boolean"  # what decode_json gives for true/false (`ref($value)`)


def perl_str(value: Any) -> str:
    """How Perl stringifies a scalar decoded from JSON (numbers print with `%.15g`)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "1" if value else ""
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value != value:
            return "NaN"
        if value in (float("inf"), float("-inf")):
            return "Inf" if value > 0 else "-Inf"
        return "%.15g" % value
    return str(value)


def perl_ref(value: Any) -> str:
    """`ref($value)` for a decoded parameter: '' for plain scalars."""
    if isinstance(value, bool):
        return JSON_BOOL_CLASS
    if isinstance(value, dict):
        return "HASH"
    if isinstance(value, list) and not isinstance(value, RepeatedValue):
        return "ARRAY"
    return ""


def perl_true(text: str) -> bool:
    return text != "" and text != "0"


_PERL_FLAGS_RE = re.compile(r"\(\?\^([a-z]*):")


def _perl_regex_to_python(pattern: str) -> str:
    # A stringified qr// carries `(?^:...)`/`(?^i:...)`; Python spells these `(?:...)`/`(?i:...)`.
    return _PERL_FLAGS_RE.sub(lambda m: f"(?{m.group(1)}:" if m.group(1) else "(?:", pattern)


@functools.cache
def anchored(pattern: str) -> re.Pattern[str]:
    # JSONSchema.pm::check_prop: `$value !~ m/^$pattern$/` -- plain interpolation, no group, so a
    # top-level alternation binds to the anchors as in Perl; `$` also matches before a final "\n".
    return re.compile("^" + _perl_regex_to_python(pattern) + "$")


IS_INTEGER_RE = re.compile(r"^[+-]?\d+$")  # JSONSchema.pm::is_integer
IS_NUMBER_RE = re.compile(r"^[+-]?(\d+\.\d+|\d+\.|\.\d+|\d+)([eE][+-]?\d+)?$")  # ::is_number


def is_number(text: str) -> bool:
    return IS_NUMBER_RE.match(text) is not None


def num(text: Any) -> float:
    return float(perl_str(text).strip())


# ----------------------------------------------------------------------------------------------
# Errors
# ----------------------------------------------------------------------------------------------


class Die(Exception):
    """A Perl `die` inside a format validator; `msg` is `$@` as a string."""

    def __init__(self, msg: str) -> None:
        super().__init__(msg)
        self.msg = msg


def add_error(errors: dict[str, str], path: str, msg: str) -> None:
    # JSONSchema.pm::add_error: a second error on one path is joined with '\n' in single quotes,
    # i.e. a literal backslash and "n".
    path = path or "_root"
    if errors.get(path):
        errors[path] = errors[path] + "\\n" + msg
    else:
        errors[path] = msg


def format_error(errors: dict[str, str]) -> Die:
    # parse_property_string: `raise "format error\n", errors => $errors`; Exception.pm::stringify
    # appends "$e: $errors->{$e}\n" for each error.
    return Die("format error\n" + "".join(f"{k}: {v}\n" for k, v in errors.items()))
