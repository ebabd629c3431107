from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pvectl.upid import Upid, is_upid, parse_upid

EXAMPLE = "UPID:pve1:000C1A2B:03B4C5D6:66F1E2D3:qmclone:9000:root@pam:"


def test_parse_example_from_spec() -> None:
    u = Upid.parse(EXAMPLE)
    assert (u.node, u.pid, u.pstart, u.starttime, u.type, u.id, u.user) == (
        "pve1", 793131, 62178774, 1727128275, "qmclone", "9000", "root@pam")
    assert str(u) == EXAMPLE and u.format() == EXAMPLE
    assert u.vmid == 9000 and u.tokenid is None and u.userid == "root@pam"


def test_token_user_nine_digit_pstart_and_empty_id() -> None:
    s = "UPID:pve-mp:00000ACD:1006AE8F0:679A423B:aptupdate::capmox@pve!capi:"
    u = parse_upid(s)
    assert u.pstart == 0x1006AE8F0 and u.id == "" and u.vmid is None
    assert u.user == "capmox@pve!capi" and u.userid == "capmox@pve" and u.tokenid == "capi"
    assert str(u) == s


def test_lowercase_hex_is_sent_back_verbatim_but_equal() -> None:
    s = EXAMPLE.replace("000C1A2B", "000c1a2b")
    u = Upid.parse(s)
    assert str(u) == s and u == Upid.parse(EXAMPLE) and u.format() == EXAMPLE


def test_frozen_and_hashable() -> None:
    u = Upid.parse(EXAMPLE)
    with pytest.raises(AttributeError):
        u.node = "x"  # type: ignore[misc]
    assert {u: 1}[Upid.parse(EXAMPLE)] == 1
    assert repr(u) == ("Upid(node='pve1', pid=793131, pstart=62178774, starttime=1727128275, "
                       "type='qmclone', id='9000', user='root@pam')")


@pytest.mark.parametrize("text,message", [
    ("UPID:pve1:000C1A2B:03B4C5D6:66F1E2D3:qmclone:9000:root@pam",
     "not a UPID: 'UPID:pve1:000C1A2B:03B4C5D6:66F1E2D3:qmclone:9000:root@pam' has 8 ':'-separated segments, "
     "expected 9 (UPID:node:pid:pstart:starttime:type:id:user: with a trailing colon)"),
    ("pve1:000C1A2B", "not a UPID: 'pve1:000C1A2B' does not start with 'UPID:'"),
    ("UPID:pve1:C1A2B:03B4C5D6:66F1E2D3:qmclone:9000:root@pam:",
     "not a UPID: 'UPID:pve1:C1A2B:03B4C5D6:66F1E2D3:qmclone:9000:root@pam:': pid 'C1A2B' is not 8 hex digits"),
    ("UPID:pve1:000C1A2B:3B4C5D6:66F1E2D3:qmclone:9000:root@pam:",
     "not a UPID: 'UPID:pve1:000C1A2B:3B4C5D6:66F1E2D3:qmclone:9000:root@pam:': pstart '3B4C5D6' is not "
     "8-9 hex digits"),
    ("UPID:-pve1:000C1A2B:03B4C5D6:66F1E2D3:qmclone:9000:root@pam:",
     "not a UPID: 'UPID:-pve1:000C1A2B:03B4C5D6:66F1E2D3:qmclone:9000:root@pam:': node '-pve1' is not a node name"),
    ("UPID:pve1:000C1A2B:03B4C5D6:66F1E2D3:qm clone:9000:root@pam:",
     "not a UPID: 'UPID:pve1:000C1A2B:03B4C5D6:66F1E2D3:qm clone:9000:root@pam:': type 'qm clone' is not a "
     "task type without ':', '/' or spaces"),
])
def test_parse_errors(text: str, message: str) -> None:
    with pytest.raises(ValueError) as ei:
        Upid.parse(text)
    assert str(ei.value) == message
    assert not is_upid(text)


def test_bad_fields_on_construction() -> None:
    with pytest.raises(ValueError, match=r"^invalid UPID fields: pid -1, type 'a/b'$"):
        Upid("pve1", -1, 1, 1, "a/b", "", "root@pam")


node_st = st.from_regex(r"\A[a-zA-Z0-9]([a-zA-Z0-9-]{0,10}[a-zA-Z0-9])?\Z")
word_st = st.from_regex(r"\A[A-Za-z0-9_.@!-]{1,20}\Z")


@given(node=node_st, pid=st.integers(0, 0xFFFFFFFF), pstart=st.integers(0, 0xFFFFFFFFF),
       starttime=st.integers(0, 0xFFFFFFFF), type_=word_st, id_=st.one_of(st.just(""), word_st),
       user=word_st)
def test_roundtrip(node: str, pid: int, pstart: int, starttime: int, type_: str, id_: str, user: str) -> None:
    u = Upid(node, pid, pstart, starttime, type_, id_, user)
    s = str(u)
    assert s.startswith("UPID:") and s.endswith(":") and len(s.split(":")) == 9
    v = Upid.parse(s)
    assert v == u and str(v) == s and is_upid(s)


GOOD = "UPID:pve1:000c1a2b:03b4c5d6:66f1e2d3:qmclone:9000:root@pam:"   # lower-case hex is valid


@pytest.mark.parametrize("field,value,expect", [
    ("starttime", "66F1E2D", "8 hex digits"),
    ("id", "9000/1", "no ':', '/' or spaces"),
    ("user", "root pam", "a user id"),
    ("pstart", "03B4C5D6A7", "8-9 hex digits"),
    ("node", "pve_1", "a node name"),
])
def test_each_field_is_named_in_the_error(field: str, value: str, expect: str) -> None:
    # the fields before the bad one are valid lower-case hex: only the bad field is blamed
    parts = GOOD.split(":")
    parts[["", "node", "pid", "pstart", "starttime", "type", "id", "user"].index(field)] = value
    text = ":".join(parts)
    with pytest.raises(ValueError) as ei:
        Upid.parse(text)
    assert str(ei.value) == f"not a UPID: {text!r}: {field} {value!r} is not {expect}"


def test_nine_segments_without_the_trailing_colon_is_refused() -> None:
    text = "UPID:pve1:000C1A2B:03B4C5D6:66F1E2D3:qmclone:9000:root@pam:x"
    with pytest.raises(ValueError, match=r"has 9 ':'-separated segments, expected 9 \(.*with a trailing colon\)$"):
        Upid.parse(text)


def test_long_text_is_shortened_in_the_error_at_120_characters() -> None:
    exact = "X" * 120
    with pytest.raises(ValueError) as ei:
        Upid.parse(exact)
    assert str(ei.value) == f"not a UPID: {exact!r} does not start with 'UPID:'"
    longer = "X" * 121
    with pytest.raises(ValueError) as ei:
        Upid.parse(longer)
    assert str(ei.value) == f"not a UPID: {'X' * 117 + '...'!r} does not start with 'UPID:'"


def test_field_limits_on_construction() -> None:
    Upid("pve1", 0xFFFFFFFF, 0xFFFFFFFFF, 0xFFFFFFFF, "qmstart", "", "root@pam")   # the largest valid values
    with pytest.raises(ValueError, match=r"^invalid UPID fields: pid 4294967296, pstart 68719476736, "
                                         r"starttime 4294967296$"):
        Upid("pve1", 0x100000000, 0x1000000000, 0x100000000, "qmstart", "", "root@pam")
    with pytest.raises(ValueError, match=r"^invalid UPID fields: node 'pve 1', id 'a:b', user 'x/y'$"):
        Upid("pve 1", 1, 1, 1, "qmstart", "a:b", "x/y")
    with pytest.raises(ValueError, match=r"^invalid UPID fields: node 1, pstart '1'$"):
        Upid(1, 1, "1", 1, "qmstart", "", "root@pam")  # type: ignore[arg-type]


def test_hash_follows_the_fields() -> None:
    a, b = Upid.parse(EXAMPLE), Upid.parse(EXAMPLE.lower().replace("upid", "UPID"))
    assert a == b and hash(a) == hash(b)
    other = Upid(a.node, a.pid + 1, a.pstart, a.starttime, a.type, a.id, a.user)
    assert other != a and hash(other) != hash(a)


def test_cannot_delete_a_field_and_a_non_string_is_refused() -> None:
    u = Upid.parse(EXAMPLE)
    with pytest.raises(AttributeError, match=r"^Upid is immutable \(cannot delete 'node'\)$"):
        del u.node
    with pytest.raises(ValueError, match=r"^not a UPID: expected a string, got int$"):
        Upid.parse(123)  # type: ignore[arg-type]


def test_pickle_keeps_the_text_it_was_parsed_from() -> None:
    import pickle

    lower = "UPID:pve1:000c1a2b:03b4c5d6:66f1e2d3:qmclone:9000:root@pam:"
    back = pickle.loads(pickle.dumps(Upid.parse(lower)))
    assert str(back) == lower and back == Upid.parse(EXAMPLE)
