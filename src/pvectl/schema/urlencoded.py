"""Query strings and form bodies decoded exactly as pveproxy decodes them (pve-http-server
`src/PVE/APIServer/AnyEvent.pm::decode_urlencoded`; `spec/seed-errata.md` §1, `pve-semantics.md` C15),
and pve-common's `split_list`."""

from __future__ import annotations

import re

__all__ = ["RepeatedValue", "decode_urlencoded", "split_list"]


class RepeatedValue(list[str]):
    """A form key given more than once. Perl joins the values with NUL (`"$old\\0$v"`); `validate` does too."""


_PCT_RE = re.compile(rb"%([0-9a-fA-F][0-9a-fA-F])")
_PAIR_SEP_RE = re.compile(rb"[&;]")


def _pct_decode(raw: bytes) -> bytes:
    # `s/\+/ /g` then `s/%([0-9a-fA-F][0-9a-fA-F])/chr(hex($1))/eg`: one pass, so `%2541` -> `%41`.
    return _PCT_RE.sub(lambda m: bytes((int(m.group(1), 16),)), raw.replace(b"+", b" "))


def decode_urlencoded(data: str | bytes | None) -> dict[str, str | list[str] | None]:
    """Decode a query string or form body exactly as pveproxy does.

    pve-http-server `AnyEvent.pm::decode_urlencoded`:
    - `return $res if !$data`: an empty body and the body `"0"` (false in Perl) give `{}`.
    - pairs are split at `&` or `;`; Perl's split drops trailing empty fields, keeps inner/leading ones.
    - each pair is split with `my ($k, $v) = split(/=/, $kv)`: the implicit LIMIT is 3, so the value
      ends at its next raw `=` and the rest is dropped (`ipconfig0=ip=dhcp` -> `ip`). Because the LIMIT
      is positive, trailing empty fields are kept: `a=` -> `""`, `=` -> key `""`, value `""`,
      `=b` -> key `""`, value `"b"`, `a==c` -> `""`. An empty pair (`a=1&&b=2`) splits into nothing,
      which stores key `""` with no value.
    - a pair without `=` gets `None` (Perl undef); this also replaces an earlier value of that key.
    - `+` becomes a space, `%XX` is decoded once, then the value (not the key) is UTF-8 decoded
      (lax: bad sequences become U+FFFD). The key keeps its raw bytes, shown here as Latin-1.
    - a repeated key with values is joined (Perl: NUL-separated string); here a `RepeatedValue` list.

    A `str` argument is taken as the UTF-8 text of the raw bytes.
    """
    if not data:
        return {}
    raw = data.encode("utf-8", "surrogateescape") if isinstance(data, str) else bytes(data)
    if raw == b"0":
        return {}
    pairs = _PAIR_SEP_RE.split(raw)
    while pairs and pairs[-1] == b"":  # Perl split without LIMIT strips trailing empty fields
        pairs.pop()
    res: dict[str, str | list[str] | None] = {}
    for kv in pairs:
        parts = kv.split(b"=", 2) if kv else []
        k = _pct_decode(parts[0]).decode("latin-1") if parts else ""
        if len(parts) < 2:
            res[k] = None
            continue
        v = _pct_decode(parts[1]).decode("utf-8", "replace")
        old = res.get(k)
        if old is None:
            res[k] = v
        elif isinstance(old, str):
            res[k] = RepeatedValue([old, v])
        else:  # a RepeatedValue already
            old.append(v)
    return res


def split_list(text: str | None) -> list[str]:
    """pve-common `ParseUtils.pm::split_list` (was `Tools.pm`): NUL-separated, else `,`/`;`/whitespace."""
    text = text or ""
    if "\0" in text:
        parts = text.split("\0")
        while parts and parts[-1] == "":
            parts.pop()
        return parts
    text = re.sub(r"[,;]", " ", text).lstrip()
    return [p for p in re.split(r"\s+", text)] if text else []
