"""`LazyPattern`: a regular expression compiled on its first use.

The modules on the CLI's start-up path (errors.py, upid.py) hold a few patterns each; compiling them,
and importing `re` at all, at import time would cost every command's start-up even when nothing is
matched.
"""

from __future__ import annotations

TYPE_CHECKING = False  # `typing` costs start-up time; annotations are strings (PEP 563)
if TYPE_CHECKING:
    import re

__all__ = ["LazyPattern"]


class LazyPattern:
    """The `match` and `search` of `re.compile(pattern)`, compiled when first called."""

    __slots__ = ("_pattern", "_rx")

    def __init__(self, pattern: str) -> None:
        self._pattern = pattern
        self._rx: re.Pattern[str] | None = None

    def _compiled(self) -> re.Pattern[str]:
        if self._rx is None:
            import re

            self._rx = re.compile(self._pattern)
        return self._rx

    def match(self, text: str) -> re.Match[str] | None:
        return self._compiled().match(text)

    def search(self, text: str) -> re.Match[str] | None:
        return self._compiled().search(text)
