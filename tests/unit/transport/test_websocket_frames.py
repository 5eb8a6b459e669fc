"""RFC 6455 framing: what the server accepts from a client, and what it refuses with which code."""

from __future__ import annotations

import os
import struct
import tracemalloc

import pytest

from zaqar.transport.websocket import frames

KEY = b"\x11\x22\x33\x44"


def client_frame(opcode: int, payload: bytes, *, fin: bool = True, key: bytes = KEY, masked: bool = True,
                 rsv: int = 0) -> bytes:
    """A frame as a browser sends it (masked)."""
    first = (0x80 if fin else 0) | rsv | opcode
    size = len(payload)
    if size < 126:
        head = bytes((first, (0x80 if masked else 0) | size))
    elif size < 65536:
        head = struct.pack("!BBH", first, (0x80 if masked else 0) | 126, size)
    else:
        head = struct.pack("!BBQ", first, (0x80 if masked else 0) | 127, size)
    if not masked:
        return head + payload
    body = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return head + key + body


def events(data: bytes, *, max_message: int = 1 << 20, split: int = 0) -> list:
    parser = frames.FrameParser(max_message)
    pieces = [data] if not split else [data[i:i + split] for i in range(0, len(data), split)]
    found = []
    for piece in pieces:
        parser.feed(piece)
        while (event := parser.next_event()) is not None:
            found.append(event)
    return found


def refusal(data: bytes, **kwargs) -> int:
    with pytest.raises(frames.ProtocolError) as caught:
        events(data, **kwargs)
    return caught.value.code


@pytest.mark.parametrize("size", [0, 1, 5, 125, 126, 300, 65535, 65536, 70001])
def test_payloads_of_every_length_class_are_unmasked_exactly(size):
    payload = os.urandom(size)
    assert events(client_frame(frames.OP_BINARY, payload)) == [frames.Message(payload, True)]


@pytest.mark.parametrize("split", [1, 3, 7])
def test_a_message_is_the_same_however_the_bytes_arrive(split):
    data = client_frame(frames.OP_TEXT, b'{"action": "ping_node"}') * 3
    assert events(data, split=split) == [frames.Message(b'{"action": "ping_node"}', False)] * 3


def test_fragments_are_joined_and_control_frames_may_come_between():
    data = (client_frame(frames.OP_TEXT, b"hel", fin=False) + client_frame(frames.OP_PING, b"p")
            + client_frame(frames.OP_CONTINUATION, b"lo", fin=False)
            + client_frame(frames.OP_CONTINUATION, b"!"))
    assert events(data) == [frames.Control(frames.OP_PING, b"p"), frames.Message(b"hello!", False)]


def test_text_is_handed_over_as_bytes_even_when_not_utf8():
    # NOTE: the protocol answers undecodable text with its own 400 (websocket.md §5), not a close.
    assert events(client_frame(frames.OP_TEXT, b"\xff\xfe")) == [frames.Message(b"\xff\xfe", False)]


def _fed_in_pieces(parser: frames.FrameParser, data: bytes, piece: int) -> tuple[list, int]:
    """Events from ``data`` fed ``piece`` bytes at a time, and the most the parser ever held."""
    found, most = [], 0
    for i in range(0, len(data), piece):
        parser.feed(data[i:i + piece])
        while (event := parser.next_event()) is not None:
            found.append(event)
        most = max(most, parser.pending)
    return found, most


def test_an_oversize_message_is_reported_at_once_then_skipped_unbuffered_and_the_next_one_is_read():
    parser = frames.FrameParser(1000)
    data = client_frame(frames.OP_BINARY, b"x" * 200_000) + client_frame(frames.OP_TEXT, b"next")
    found, most = _fed_in_pieces(parser, data, 4096)
    assert found == [frames.Oversize(binary=True), frames.Message(b"next", False)]
    assert most <= 4096  # never more than what one read brought: the payload was dropped as it came


def test_an_oversize_fragmented_message_is_skipped_whole_with_control_frames_still_seen():
    data = (client_frame(frames.OP_TEXT, b"x" * 600, fin=False) + client_frame(frames.OP_PING, b"p")
            + client_frame(frames.OP_CONTINUATION, b"x" * 600, fin=False)
            + client_frame(frames.OP_CONTINUATION, b"x" * 600) + client_frame(frames.OP_TEXT, b"ok"))
    for split in (0, 7):
        assert events(data, max_message=1000, split=split) == [
            frames.Control(frames.OP_PING, b"p"), frames.Oversize(binary=False), frames.Message(b"ok", False)]
    unfinished = client_frame(frames.OP_TEXT, b"x" * 600, fin=False) + client_frame(frames.OP_CONTINUATION,
                                                                                       b"x" * 600, fin=False)
    assert events(unfinished, max_message=1000) == [frames.Oversize(binary=False)]  # before it ends


def test_fragment_headers_count_toward_the_limit_so_empty_fragments_cannot_pile_up():
    # 20 million empty continuations grew the server by 157 MB (review 8 #6); here they are bounded.
    empties = client_frame(frames.OP_TEXT, b"", fin=False) + client_frame(frames.OP_CONTINUATION, b"",
                                                                         fin=False) * 200
    over = empties + client_frame(frames.OP_CONTINUATION, b"")
    assert events(over, max_message=1000) == [frames.Oversize(binary=False)]  # 202 x 6 header bytes > 1000
    under = client_frame(frames.OP_TEXT, b"", fin=False) * 1 + client_frame(frames.OP_CONTINUATION, b"",
                                                                           fin=False) * 100
    assert events(under + client_frame(frames.OP_CONTINUATION, b"!"), max_message=1000) == [
        frames.Message(b"!", False)]
    flood = client_frame(frames.OP_TEXT, b"", fin=False) + client_frame(frames.OP_CONTINUATION, b"",
                                                                       fin=False) * 50_000
    tracemalloc.start()
    try:
        _fed_in_pieces(frames.FrameParser(1000), flood, 65536)  # skipped, far from the discard limit
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 200_000  # 50,000 fragments (300 kB) held nothing per fragment
    parser = frames.FrameParser(1000, discard_limit=100_000)
    with pytest.raises(frames.ProtocolError) as caught:
        _fed_in_pieces(parser, flood, 65536)
    assert caught.value.code == 1009  # past the discard limit (100 kB of headers): not worth reading on


def test_a_message_beyond_the_discard_limit_closes_with_1009_from_its_header_alone():
    parser = frames.FrameParser(1000)
    parser.feed(bytes((0x82, 0xFF)) + (frames.DISCARD_LIMIT + 1).to_bytes(8, "big"))
    with pytest.raises(frames.ProtocolError) as caught:
        parser.next_event()
    assert caught.value.code == 1009
    assert frames.FrameParser(1000).next_event() is None
    at_bound = frames.FrameParser(1000)
    at_bound.feed(bytes((0x82, 0xFF)) + frames.DISCARD_LIMIT.to_bytes(8, "big") + KEY)
    assert at_bound.next_event() == frames.Oversize(binary=True)  # answered at once, then skipped
    at_bound.feed(bytes(100_000))
    assert at_bound.next_event() is None and at_bound.pending == 0


def test_the_discard_limit_grows_with_a_large_message_limit():
    parser = frames.FrameParser(10 * frames.DISCARD_LIMIT)
    parser.feed(bytes((0x82, 0xFF)) + (20 * frames.DISCARD_LIMIT).to_bytes(8, "big") + KEY)
    assert parser.next_event() == frames.Oversize(binary=True)  # over the message limit, under 4 x it


def test_a_message_at_the_limit_is_accepted():
    assert events(client_frame(frames.OP_BINARY, b"x" * 1000), max_message=1000)[0].data == b"x" * 1000


@pytest.mark.parametrize("split", [1, 7, 500])
def test_a_message_within_the_limit_is_accepted_however_slowly_its_bytes_arrive(split):
    whole = client_frame(frames.OP_BINARY, b"x" * 1000)
    assert events(whole, max_message=1000, split=split) == [frames.Message(b"x" * 1000, True)]
    fragments = (client_frame(frames.OP_TEXT, b"a" * 400, fin=False)
                 + client_frame(frames.OP_CONTINUATION, b"b" * 400))  # 800 + 2 x 6 header bytes
    joined = frames.Message(b"a" * 400 + b"b" * 400, False)
    assert events(fragments, max_message=1000, split=split) == [joined]


@pytest.mark.parametrize("data", [
    client_frame(frames.OP_TEXT, b"hi", masked=False),
    client_frame(frames.OP_TEXT, b"hi", rsv=0x40),
    client_frame(0x3, b"hi"),
    client_frame(0xB, b"hi"),
    client_frame(frames.OP_CONTINUATION, b"hi"),
    client_frame(frames.OP_TEXT, b"a", fin=False) + client_frame(frames.OP_TEXT, b"b"),
    client_frame(frames.OP_PING, b"p", fin=False),
    client_frame(frames.OP_PING, b"p" * 126),
], ids=["unmasked", "reserved-bit", "opcode-3", "opcode-11", "lone-continuation", "nested-message",
        "fragmented-ping", "long-ping"])
def test_framing_violations_close_with_1002(data):
    assert refusal(data) == 1002


@pytest.mark.parametrize("payload, code", [
    (b"", None), (struct.pack("!H", 1000) + b"bye", 1000), (struct.pack("!H", 4003), 4003),
])
def test_close_codes_a_peer_may_send(payload, code):
    assert frames.close_code(payload) == code


@pytest.mark.parametrize("payload, code", [
    (b"\x03", 1002), (struct.pack("!H", 1005), 1002), (struct.pack("!H", 999), 1002),
    (struct.pack("!H", 1000) + b"\xff", 1007),
])
def test_malformed_close_frames_are_refused(payload, code):
    with pytest.raises(frames.ProtocolError) as caught:
        frames.close_code(payload)
    assert caught.value.code == code


@pytest.mark.parametrize("size", [0, 125, 126, 65535, 65536])
def test_server_frames_are_unmasked_and_sized_by_their_length_class(size):
    data = frames.frame(frames.OP_BINARY, b"y" * size)
    assert data[0] == 0x82
    assert not data[1] & 0x80
    header = 2 if size < 126 else 4 if size < 65536 else 10
    assert len(data) == header + size


def test_close_frame_carries_code_and_reason():
    data = frames.close_frame(1009, "Frame too large.")
    assert data[0] == 0x88
    assert struct.unpack("!H", data[2:4])[0] == 1009 and data[4:] == b"Frame too large."
