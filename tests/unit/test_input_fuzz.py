"""Generated input for the parsers of things users and servers type: UPIDs, sizes, memory, property
strings. Each either returns a well-formed value or raises its typed error; nothing else escapes."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pvectl.errors import UsageError
from pvectl.units import disk_size_param, parse_disk_size, parse_memory, parse_prop, size_bytes
from pvectl.upid import Upid, is_upid

EXAMPLE = "UPID:pve1:000C1A2B:03B4C5D6:66F1E2D3:qmclone:9000:root@pam:"
FUZZ = settings(max_examples=400, deadline=None)


@st.composite
def mutated_upids(draw: st.DrawFn) -> str:
    parts = EXAMPLE.split(":")
    i = draw(st.integers(0, len(parts) - 1))
    parts[i] = draw(st.one_of(st.text(max_size=12), st.sampled_from(["", " ", "\n", "\u0661\u0660\u0660", "0" * 9,
                                                                     "G" * 8, "a/b", "x y", "\t"])))
    text = ":".join(parts)
    return text + draw(st.sampled_from(["", "\n", " ", ":"]))


@FUZZ
@given(text=st.one_of(st.text(max_size=80), mutated_upids()))
def test_a_upid_parses_exactly_or_is_a_value_error(text: str) -> None:
    try:
        u = Upid.parse(text)
    except ValueError as e:
        assert str(e).startswith("not a UPID")
        assert not is_upid(text)
        return
    assert is_upid(text) and str(u) == text
    assert text.isascii() or not any(c.isspace() for c in text)
    assert not any(c.isspace() or ord(c) < 32 for c in text), repr(text)
    assert Upid.parse(u.format()) == u
    assert u.vmid is None or (u.id.isascii() and str(u.vmid) == u.id.lstrip("0") or u.id.strip("0") == "")


@pytest.mark.parametrize("text", [EXAMPLE + "\n", EXAMPLE.replace(":9000:", ":9000 :"),
                                  EXAMPLE.replace("qmclone", "qm\u00a0clone"), EXAMPLE.replace("pve1", "pve\u0661")])
def test_whitespace_and_foreign_digits_are_not_upids(text: str) -> None:
    with pytest.raises(ValueError):
        Upid.parse(text)
    assert not is_upid(text)


def test_a_vmid_in_a_upid_is_ascii_digits() -> None:
    assert Upid.parse(EXAMPLE.replace(":9000:", ":\u0661\u0660\u0660:")).vmid is None
    assert Upid.parse(EXAMPLE).vmid == 9000


# ------------------------------------------------------------------------------------------------
# Sizes: one grammar for memory and disks

K, M, G, T = 1024, 1024**2, 1024**3, 1024**4


@pytest.mark.parametrize("text,relative,size,param", [
    ("10G", False, 10 * G, "10G"), ("+10G", True, 10 * G, "+10G"), ("10GiB", False, 10 * G, "10G"),
    ("+1.5TiB", True, int(1.5 * T), "+1.5T"), ("512", False, 512, "512"), ("100K", False, 100 * K, "100K"),
    ("2g", False, 2 * G, "2G"), (" +4G ", True, 4 * G, "+4G"), ("256MiB", False, 256 * M, "256M"),
])
def test_disk_sizes(text: str, relative: bool, size: int, param: str) -> None:
    assert parse_disk_size(text) == (relative, size)
    assert disk_size_param(text) == param


@pytest.mark.parametrize("text,mib", [("4096", 4096), ("4G", 4096), ("4GiB", 4096), ("4g", 4096), ("512M", 512),
                                      ("512MiB", 512), ("1.5G", 1536), (2048, 2048), ("1T", 1024 * 1024),
                                      ("1048576K", 1024)])
def test_memory_sizes(text: object, mib: int) -> None:
    assert parse_memory(text) == mib  # type: ignore[arg-type]


BAD_SIZES = ["1e3G", "10GB", "10 G", "-5G", "ten", "", "+", "G", "1.G", ".5G", "+-1G", "0x10", "10Gi", "10GiBs",
             "\u0661\u0660G", "inf", "nan", "1_000", "10\nG", "++1G"]


@pytest.mark.parametrize("text", BAD_SIZES)
def test_malformed_sizes_are_usage_errors_showing_the_accepted_forms(text: str) -> None:
    for parse, what in ((parse_disk_size, "disk size"), (parse_memory, "memory size")):
        with pytest.raises(UsageError) as ei:
            parse(text)
        assert ei.value.exit_code == 2
        assert ei.value.message.startswith(f"invalid {what} {text!r}: "), ei.value.message
        assert "K, M, G or T" in ei.value.message and "KiB" in ei.value.message, ei.value.message


def test_a_negative_disk_size_says_disks_only_grow() -> None:
    with pytest.raises(UsageError) as ei:
        parse_disk_size("-5G")
    assert "disks only grow" in ei.value.message


@pytest.mark.parametrize("value,problem", [("+1G", "memory is an absolute size"), ("8", "below Proxmox's minimum"),
                                           ("1.3M", "not a whole number of MiB"), (True, "invalid memory size"),
                                           (-1, "below Proxmox's minimum"),
                                           ("9" * 30 + "T", "more than 4 PiB")])
def test_bad_memory_values(value: object, problem: str) -> None:
    with pytest.raises(UsageError) as ei:
        parse_memory(value)  # type: ignore[arg-type]
    assert problem in ei.value.message


SIZE_TEXT = st.one_of(st.text(max_size=16),
                      st.from_regex(r"\A[+-]?[0-9]{0,30}(\.[0-9]{0,12})?[KMGTkmgtB]?(i?B)?\Z"),
                      st.builds(lambda n, u: f"{n}{u}", st.floats(allow_nan=True, allow_infinity=True),
                                st.sampled_from(["", "K", "G", "GiB", "T"])))


@FUZZ
@given(text=SIZE_TEXT)
def test_disk_size_parser_returns_a_size_or_a_usage_error(text: str) -> None:
    try:
        relative, size = parse_disk_size(text)
    except UsageError as e:
        assert e.message.startswith("invalid disk size") and "\n" not in e.message
        return
    assert isinstance(size, int) and size >= 0 and isinstance(relative, bool)
    param = disk_size_param(text)
    # what is sent is Proxmox's own pattern (qemu-server `size`: \+?\d+(\.\d+)?[KMGT]?)
    import re

    assert re.fullmatch(r"\+?[0-9]+(\.[0-9]+)?[KMGT]?", param), param
    assert parse_disk_size(param) == (relative, size)


@FUZZ
@given(value=st.one_of(SIZE_TEXT, st.integers(-10**30, 10**30), st.booleans(), st.none(), st.floats()))
def test_memory_parser_returns_mib_or_a_usage_error(value: object) -> None:
    try:
        mib = parse_memory(value)  # type: ignore[arg-type]
    except UsageError as e:
        assert e.message and "\n" not in e.message
        return
    assert type(mib) is int and 16 <= mib <= 4 * 1024 * 1024 * 1024


@FUZZ
@given(text=st.one_of(st.none(), st.text(max_size=30), SIZE_TEXT))
def test_size_bytes_is_an_int_or_none(text: str | None) -> None:
    v = size_bytes(text)
    assert v is None or (type(v) is int and v >= 0)


@FUZZ
@given(text=st.text(alphabet=st.sampled_from(list("ab=,:;/ \u00e9\n")), max_size=40))
def test_property_strings_split_into_a_first_value_and_options(text: str) -> None:
    first, opts = parse_prop(text)
    assert first is None or ("=" not in first and "," not in first)
    assert all("," not in k and "=" not in k and "," not in v for k, v in opts.items())


# The schema's property-string checker behind `vm set KEY=VALUE` (pvectl.schema.check, the qemu config
# PUT's formats): any value is accepted or refused with one line; nothing else escapes.
_PROP_KEYS = ["net0", "scsi0", "ipconfig0", "agent", "boot", "cpu", "vga", "serial0", "efidisk0", "startup",
              "smbios1", "numa0", "hostpci0", "usb0", "memory", "cores", "tags", "onboot", "name"]
_PROP_TEXT = st.text(alphabet=st.sampled_from(list("abcdefghikmnorstuvx0123456789=,;:/.-_+ \t\u00e9\u0663\n")),
                     max_size=60)


@FUZZ
@given(key=st.sampled_from(_PROP_KEYS), value=_PROP_TEXT)
def test_any_config_value_is_accepted_or_refused_in_one_line(key: str, value: str) -> None:
    from pvectl.vms.config import validate_config_params
    from pvectl.vms.reads import VmSummary

    vm = VmSummary.from_resource({"vmid": 100, "name": "web", "node": "pve1", "type": "qemu"})
    try:
        validate_config_params(vm, {key: value})
    except UsageError as exc:
        assert "\n" not in exc.message and exc.exit_code == 2, exc.message


@FUZZ
@given(key=st.sampled_from(_PROP_KEYS), parts=st.lists(st.tuples(st.sampled_from(
    ["model", "bridge", "ip", "gw", "size", "file", "type", "enabled", "order", "virtio", "firewall", "x"]),
    _PROP_TEXT.filter(lambda t: "," not in t)), max_size=5))
def test_any_key_value_list_is_accepted_or_refused_in_one_line(key: str, parts: list[tuple[str, str]]) -> None:
    from pvectl.vms.config import validate_config_params
    from pvectl.vms.reads import VmSummary

    vm = VmSummary.from_resource({"vmid": 100, "name": "web", "node": "pve1", "type": "qemu"})
    value = ",".join(f"{k}={v}" for k, v in parts)
    try:
        validate_config_params(vm, {key: value})
    except UsageError as exc:
        assert "\n" not in exc.message and exc.exit_code == 2, exc.message
