import pytest
from hypothesis import given
from hypothesis import strategies as st

from pan_runtime.data.address import NodeAddress
from pan_runtime.errors import AddressError


def test_ipv4_endpoint_maps_reversibly():
    a = NodeAddress.from_endpoint("10.1.2.3", 9000)
    assert a.ipv4_endpoint() == ("10.1.2.3", 9000)
    assert str(a) == "10.1.2.3:9000"
    assert NodeAddress.parse("10.1.2.3:9000") == a
    assert a.raw[:10] == b"\0" * 8 + b"\xff\xff"


def test_ipv6_endpoint_uses_all_128_bits():
    a = NodeAddress.from_endpoint("2001:db8::1:2", 7000)
    assert a.raw[:14] == bytes.fromhex("20010db8000000000000000000010002")[:14]
    assert a.raw[14:] == (7000).to_bytes(2, "big")
    assert a.ipv4_endpoint() is None
    assert NodeAddress.parse("[2001:db8::1:2]:7000") == a


@given(st.integers(min_value=0, max_value=(1 << 128) - 1))
def test_text_form_round_trips(n):
    a = NodeAddress.from_int(n)
    assert NodeAddress.parse(str(a)) == a
    assert int(a) == n
    assert NodeAddress.parse(a.raw.hex()) == a


@pytest.mark.parametrize("bad", ["", "1.2.3.4:x", "[::1]:", "nonsense", "1.2.3.4:70000", "g" * 32])
def test_bad_text_is_an_address_error(bad):
    with pytest.raises(AddressError):
        NodeAddress.parse(bad)


def test_wrong_length_and_immutability():
    with pytest.raises(AddressError, match="16 bytes"):
        NodeAddress(b"abc")
    a = NodeAddress.from_int(1)
    with pytest.raises(AttributeError):
        a.raw = b"x"  # type: ignore[misc]


def test_addresses_print_as_users_type_them():
    from pan_runtime.data.address import address_text, endpoint_text, parse_endpoint

    v6 = NodeAddress.parse("[::1]:7202")
    assert str(v6) == "::1c22"  # the 128-bit form keeps the port, not the endpoint's last bits
    assert address_text(v6, [("127.0.0.1", 7202), ("::1", 7201), ("::1", 7202)]) == "[::1]:7202"
    assert address_text(v6, [("fe80::1%eth0", 7202)]) == "::1c22"  # another endpoint: the text form
    assert address_text(NodeAddress.parse("10.0.0.1:5")) == "10.0.0.1:5"
    assert endpoint_text("::1", 7) == "[::1]:7" and endpoint_text("fe80::1%lo", 7) == "[fe80::1]:7"
    assert endpoint_text("10.0.0.1", 7) == "10.0.0.1:7"
    assert parse_endpoint("[::1]:7202") == ("::1", 7202) and parse_endpoint("127.0.0.1:9") == ("127.0.0.1", 9)
    for bad in ("::1", "host", "[::1]:x", "1.2.3.4:70000", ":5"):
        with pytest.raises(AddressError):
            parse_endpoint(bad)
