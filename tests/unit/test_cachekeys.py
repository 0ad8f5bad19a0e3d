from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from config.errors import CacheKeyError
from tasks.redis_io.formats import (
    MAX_KEY_BYTES,
    decode_value,
    encode_value,
    key_name,
    validate_namespace,
    validate_part,
    validate_pattern,
)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.text()
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5)
    ),
    max_leaves=30,
)


@given(json_values)
def test_any_json_value_round_trips(value: object) -> None:
    assert decode_value(encode_value(value, "t:x 3")) == ("t:x 3", value)


@given(st.binary(max_size=2000))
def test_bytes_round_trip_as_bytes_whatever_they_hold(value: bytes) -> None:
    # Newlines, NULs and JSON-looking bytes inside the body change nothing.
    assert decode_value(encode_value(value, "t:x 3")) == ("t:x 3", value)
    assert decode_value(encode_value(b"\n" + value)) == ("", b"\n" + value)


@given(st.text(min_size=1, max_size=60))
def test_valid_parts_contain_no_glob_or_control_characters(part: str) -> None:
    try:
        validate_part(part)
    except CacheKeyError:
        return
    assert not any(c in part for c in "*?[]{}\\ \n\r\t\x00")
    assert all(ord(c) > 0x20 and not 0x7F <= ord(c) <= 0x9F for c in part)


@pytest.mark.parametrize(
    "bad",
    ["", "a*", "user?", "[ab]", "a b", "new\nline", "nul\x00", "esc\x1b", "{slot}", "back\\slash"],
)
def test_injection_and_wildcards_rejected(bad: str) -> None:
    with pytest.raises(CacheKeyError):
        validate_part(bad)


def test_oversize_key_rejected_with_clear_message() -> None:
    with pytest.raises(CacheKeyError, match=f"longer than {MAX_KEY_BYTES} bytes"):
        validate_part("k" * (MAX_KEY_BYTES + 1))
    assert validate_part("k" * MAX_KEY_BYTES)


@pytest.mark.parametrize("bad", ["", "a:b", "a{b", "x" * 65, "sp ace", "star*"])
def test_namespace_must_be_an_identifier(bad: str) -> None:
    with pytest.raises(CacheKeyError):
        validate_namespace(bad)


@given(st.from_regex(r"[A-Za-z0-9_.-]{1,64}", fullmatch=True), st.text(min_size=1, max_size=40))
def test_keys_of_one_namespace_cannot_reach_another(namespace: str, part: str) -> None:
    try:
        name = key_name(validate_namespace(namespace), "k", validate_part(part))
    except CacheKeyError:
        return
    assert name.startswith(f"cf:{{{namespace}}}:k:")
    assert name.count("{") == 1 and name.count("}") == 1


def test_patterns_allow_globs_but_not_braces() -> None:
    assert validate_pattern("emb:*") == "emb:*"
    with pytest.raises(CacheKeyError):
        validate_pattern("*}:k:*")


def test_non_json_values_refused() -> None:
    with pytest.raises(CacheKeyError, match="JSON"):
        encode_value({1, 2})
    with pytest.raises(CacheKeyError, match="JSON"):
        encode_value(object())
    with pytest.raises(CacheKeyError, match="JSON"):
        encode_value(bytearray(b"only bytes themselves are stored raw"))
