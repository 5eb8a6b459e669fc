"""permessage-deflate (RFC 7692): what offers are accepted and answered how, and the message codec.

The peer side is plain zlib written out here, not the server's own codec, so a
round trip checks the server against the RFC rather than against itself.
"""

from __future__ import annotations

import os
import time
import tracemalloc
import zlib

import pytest

from tests.unit.transport.test_websocket_frames import client_frame
from zaqar.transport.websocket import frames, handshake

TAIL = b"\x00\x00\xff\xff"


# -- negotiation ------------------------------------------------------------------------------------

def negotiated(header: str | None) -> tuple[frames.DeflateParams, str]:
    found = handshake.negotiate_deflate(header)
    assert found is not None, f"{header!r} was declined"
    return found


PMD = "permessage-deflate; "


@pytest.mark.parametrize("offer, answer, server_bits, client_bits", [
    ("permessage-deflate", "permessage-deflate", 12, 15),
    # browsers' offer: the client accepts a window limit, so it gets a small one
    (PMD + "client_max_window_bits", PMD + "client_max_window_bits=12", 12, 12),
    (PMD + "client_max_window_bits=10", PMD + "client_max_window_bits=10", 12, 10),
    (PMD + "client_max_window_bits=15", PMD + "client_max_window_bits=12", 12, 12),
    (PMD + "client_max_window_bits=8", PMD + "client_max_window_bits=8", 12, 8),
    (PMD + "server_max_window_bits=10", PMD + "server_max_window_bits=10", 10, 15),
    (PMD + "server_max_window_bits=15", PMD + "server_max_window_bits=12", 12, 15),
    (PMD + 'server_max_window_bits="9"', PMD + "server_max_window_bits=9", 9, 15),
    ("permessage-deflate ;server_max_window_bits = 11 ; client_max_window_bits",
     PMD + "server_max_window_bits=11; client_max_window_bits=12", 11, 12),
], ids=["bare", "client-bits", "client-10", "client-15", "client-8", "server-10", "server-15",
        "quoted", "whitespace"])
def test_window_bits_are_answered_within_what_was_offered(offer, answer, server_bits, client_bits):
    params, header = negotiated(offer)
    assert header == answer
    assert (params.server_window_bits, params.client_window_bits) == (server_bits, client_bits)
    assert not params.server_no_context_takeover and not params.client_no_context_takeover


@pytest.mark.parametrize("flag", ["server_no_context_takeover", "client_no_context_takeover"])
def test_context_takeover_flags_are_echoed_and_honoured(flag):
    params, header = negotiated(f"permessage-deflate; {flag}")
    assert header == f"permessage-deflate; {flag}"
    assert getattr(params, flag) is True


def test_every_parameter_at_once():
    params, header = negotiated("permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
                                "server_max_window_bits=10; client_max_window_bits=11")
    assert header == ("permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
                      "server_max_window_bits=10; client_max_window_bits=11")
    assert params == frames.DeflateParams(True, True, 10, 11)


@pytest.mark.parametrize("offer", [
    "permessage-deflate; server_max_window_bits=8",  # zlib cannot compress within 256 bytes
    "permessage-deflate; server_max_window_bits",  # needs a value
    "permessage-deflate; server_max_window_bits=16",
    "permessage-deflate; client_max_window_bits=7",
    "permessage-deflate; client_max_window_bits=012",  # no leading zeros
    "permessage-deflate; client_max_window_bits=x",
    "permessage-deflate; server_no_context_takeover=1",  # a flag has no value
    "permessage-deflate; client_no_context_takeover=true",
    "permessage-deflate; server_no_context_takeover; server_no_context_takeover",  # twice
    "permessage-deflate; client_max_window_bits; client_max_window_bits=9",
    "permessage-deflate; mystery",  # not defined for an offer
    "permessage-deflate; ",
    "permessage-deflate;; client_max_window_bits",
    'permessage-deflate; client_max_window_bits="1 0"',  # a quoted value must hold a token
    'permessage-deflate; client_max_window_bits="10',  # an unterminated quote
    "permessage-deflate; client_max_window_bits=10=1",
    "Permessage-Deflate",  # extension names are compared exactly
    "x-webkit-deflate-frame",
    "",
    ",,,",
], ids=lambda offer: offer.replace(" ", "") or "empty")
def test_offers_we_cannot_honour_or_parse_are_declined(offer):
    assert handshake.negotiate_deflate(offer) is None


def test_no_header_negotiates_nothing():
    assert handshake.negotiate_deflate(None) is None


@pytest.mark.parametrize("header, answer", [
    ("permessage-deflate; server_max_window_bits=8, permessage-deflate",
     "permessage-deflate"),
    ("permessage-deflate; mystery, permessage-deflate; client_max_window_bits=9",
     "permessage-deflate; client_max_window_bits=9"),
    ('x-foo; a="b, c", permessage-deflate; server_no_context_takeover',  # a comma inside a quoted value
     "permessage-deflate; server_no_context_takeover"),
    ("x-webkit-deflate-frame, permessage-deflate; client_max_window_bits, permessage-deflate",
     "permessage-deflate; client_max_window_bits=12"),
    ("permessage-deflate;=, permessage-deflate", "permessage-deflate"),
])
def test_the_first_offer_we_can_honour_wins(header, answer):
    assert negotiated(header)[1] == answer


REQUEST = ("GET / HTTP/1.1\r\nHost: localhost:9000\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n")


def test_offers_spread_over_several_header_lines_are_read_as_one_list():
    head = REQUEST + "Sec-WebSocket-Extensions: x-foo\r\nsec-websocket-extensions: permessage-deflate\r\n"
    headers = handshake.parse(head.encode())
    assert headers["sec-websocket-extensions"] == "x-foo, permessage-deflate"
    assert negotiated(headers["sec-websocket-extensions"])[1] == "permessage-deflate"


def test_the_101_carries_the_agreed_extension_only_when_there_is_one():
    key = "dGhlIHNhbXBsZSBub25jZQ=="
    assert b"Sec-WebSocket-Extensions" not in handshake.accept(key)
    reply = handshake.accept(key, "permessage-deflate; client_max_window_bits=12")
    assert reply.endswith(b"\r\nSec-WebSocket-Extensions: permessage-deflate; client_max_window_bits=12"
                          b"\r\n\r\n")


# -- the codec --------------------------------------------------------------------------------------

REPLY = (b'{"request": {"action": "message_post", "headers": {"Client-ID": "3381af92-2b9e-11e3-b191-'
         b'71861300734c", "X-Project-ID": "p"}, "body": {"queue_name": "q", "messages": [{"body": "hi"}]}, '
         b'"api": "v2"}, "headers": {"status": 201}, "body": {"message_ids": ["5c6939a8e5b2f4a1d2f0c001"]}}')


def client_inflater(bits: int = 15) -> zlib._Decompress:
    return zlib.decompressobj(-bits)


def client_compress(compressor: zlib._Compress, data: bytes) -> bytes:
    out = compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(TAIL)
    return out[:-4]


def parser(params: frames.DeflateParams | None = None, max_message: int = 1 << 20) -> frames.FrameParser:
    return frames.FrameParser(max_message, frames.PerMessageDeflate(params or frames.DeflateParams()))


def events(p: frames.FrameParser, data: bytes) -> list:
    p.feed(data)
    found = []
    while (event := p.next_event()) is not None:
        found.append(event)
    return found


def test_server_messages_inflate_with_the_rfc_tail_and_context_takeover_shrinks_repeats():
    codec = frames.PerMessageDeflate(frames.DeflateParams(server_window_bits=12))
    first, second = codec.compress(REPLY), codec.compress(REPLY)
    assert not first.endswith(TAIL) and len(first) < len(REPLY)
    assert len(second) < len(first) // 3  # the second refers back to the first
    peer = client_inflater()
    assert peer.decompress(first + TAIL) == REPLY
    assert peer.decompress(second + TAIL) == REPLY


def test_without_server_context_takeover_each_message_stands_alone():
    codec = frames.PerMessageDeflate(frames.DeflateParams(server_no_context_takeover=True))
    first, second = codec.compress(REPLY), codec.compress(REPLY)
    assert first == second
    assert client_inflater().decompress(second + TAIL) == REPLY  # a fresh inflater suffices


def test_the_server_window_stays_within_the_agreed_bits():
    # Two copies of 700 random bytes, 1100 bytes apart: a 10-bit window (1 KiB) cannot refer back.
    chunk, gap = os.urandom(700), os.urandom(1100)
    message = chunk + gap + chunk
    narrow = frames.PerMessageDeflate(frames.DeflateParams(server_window_bits=10)).compress(message)
    wide = frames.PerMessageDeflate(frames.DeflateParams(server_window_bits=12)).compress(message)
    assert len(wide) < len(narrow) - 500
    assert client_inflater(10).decompress(narrow + TAIL) == message


def test_an_idle_compressor_can_be_dropped_between_messages_with_context_takeover():
    codec = frames.PerMessageDeflate(frames.DeflateParams())
    peer = client_inflater()
    assert peer.decompress(codec.compress(REPLY) + TAIL) == REPLY
    now = time.monotonic()
    assert not codec.idle(now, 10.0)
    codec.release_idle(now, 10.0)  # used just now: kept, so the next reply refers back
    again = codec.compress(REPLY)
    assert len(again) < len(REPLY) // 4 and peer.decompress(again + TAIL) == REPLY
    assert codec.idle(now + 11.0, 10.0)
    codec.release_idle(now + 11.0, 10.0)
    assert not codec.idle(now + 11.0, 10.0)
    fresh = codec.compress(REPLY)  # from an empty window, and the peer's inflater reads on regardless
    assert len(fresh) > len(again) * 2 and peer.decompress(fresh + TAIL) == REPLY


def test_an_empty_message_compresses_to_an_empty_stored_block():
    codec = frames.PerMessageDeflate(frames.DeflateParams())
    assert codec.compress(b"") == b"\x00"  # the header byte of an empty stored block
    assert client_inflater().decompress(codec.compress(b"") + TAIL) == b""


def test_server_frames_of_compressed_messages_carry_rsv1():
    data = frames.frame(frames.OP_TEXT, b"xyz", compressed=True)
    assert data[0] == 0x80 | 0x40 | frames.OP_TEXT
    assert frames.frame(frames.OP_TEXT, b"xyz")[0] == 0x81


@pytest.mark.parametrize("takeover", [True, False], ids=["context-takeover", "no-context-takeover"])
def test_client_messages_round_trip(takeover):
    p = parser(frames.DeflateParams(client_no_context_takeover=not takeover, client_window_bits=12))
    compressor = zlib.compressobj(6, zlib.DEFLATED, -12)
    sent = [REPLY, REPLY + b" again", os.urandom(3000), REPLY]
    for i, message in enumerate(sent):
        if not takeover:
            compressor = zlib.compressobj(6, zlib.DEFLATED, -12)
        payload = client_compress(compressor, message)
        opcode = frames.OP_BINARY if i % 2 else frames.OP_TEXT
        assert events(p, client_frame(opcode, payload, rsv=0x40)) == [frames.Message(message, bool(i % 2))]


def test_uncompressed_messages_pass_between_compressed_ones():
    p = parser()
    compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
    data = (client_frame(frames.OP_TEXT, client_compress(compressor, REPLY), rsv=0x40)
            + client_frame(frames.OP_TEXT, b"plain")
            + client_frame(frames.OP_TEXT, client_compress(compressor, REPLY), rsv=0x40))
    assert [e.data for e in events(p, data)] == [REPLY, b"plain", REPLY]


def test_a_fragmented_compressed_message_is_inflated_once_whole():
    payload = client_compress(zlib.compressobj(6, zlib.DEFLATED, -15), REPLY)
    third = len(payload) // 3
    data = (client_frame(frames.OP_TEXT, payload[:third], fin=False, rsv=0x40)
            + client_frame(frames.OP_PING, b"mid")
            + client_frame(frames.OP_CONTINUATION, payload[third:2 * third], fin=False)
            + client_frame(frames.OP_CONTINUATION, payload[2 * third:]))
    p = parser()
    for i in range(0, len(data), 5):  # however the bytes arrive
        p.feed(data[i:i + 5])
    assert [p.next_event(), p.next_event(), p.next_event()] == [
        frames.Control(frames.OP_PING, b"mid"), frames.Message(REPLY, False), None]


def test_a_message_ending_its_deflate_stream_is_read_and_the_next_starts_afresh():
    # RFC 7692 §7.2.3.3: a sender may end a message with a BFINAL block instead of a sync flush.
    p = parser(frames.DeflateParams(client_no_context_takeover=True))
    for message in (REPLY, b"second " + REPLY):
        compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
        final = compressor.compress(message) + compressor.flush(zlib.Z_FINISH)
        assert events(p, client_frame(frames.OP_TEXT, final, rsv=0x40)) == [frames.Message(message, False)]


def refusal(p: frames.FrameParser, data: bytes) -> int:
    with pytest.raises(frames.ProtocolError) as caught:
        events(p, data)
    return caught.value.code


COMPRESSED = client_compress(zlib.compressobj(6, zlib.DEFLATED, -15), REPLY)


@pytest.mark.parametrize("data", [
    client_frame(frames.OP_TEXT, COMPRESSED[:5], fin=False, rsv=0x40)
    + client_frame(frames.OP_CONTINUATION, COMPRESSED[5:], rsv=0x40),
    client_frame(frames.OP_PING, b"p", rsv=0x40),
    client_frame(frames.OP_CLOSE, b"\x03\xe8", rsv=0x40),
    client_frame(frames.OP_PONG, b"", rsv=0x40),
    client_frame(frames.OP_TEXT, COMPRESSED, rsv=0x20),
    client_frame(frames.OP_TEXT, COMPRESSED, rsv=0x40 | 0x10),
], ids=["rsv1-on-continuation", "rsv1-on-ping", "rsv1-on-close", "rsv1-on-pong", "rsv2", "rsv1-and-rsv3"])
def test_reserved_bits_outside_the_first_data_frame_close_with_1002(data):
    assert refusal(parser(), data) == 1002


def test_rsv1_without_negotiation_still_closes_with_1002():
    assert refusal(frames.FrameParser(1 << 20), client_frame(frames.OP_TEXT, COMPRESSED, rsv=0x40)) == 1002


def test_a_deflate_bomb_closes_with_1009_holding_no_more_than_a_piece_of_it():
    bomb = client_compress(zlib.compressobj(9, zlib.DEFLATED, -15), bytes(50_000_000))
    assert len(bomb) < 60_000  # within the frame limit: only the inflated size is over it
    codec = frames.PerMessageDeflate(frames.DeflateParams())
    tracemalloc.start()
    try:
        with pytest.raises(frames.ProtocolError) as caught:
            codec.decompress(bomb, 100_000, 1_000_000)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert caught.value.code == 1009
    assert peak < 1_000_000  # inflated in pieces and dropped: 50 MB were never held
    p = frames.FrameParser(100_000, frames.PerMessageDeflate(frames.DeflateParams()))
    assert refusal(p, client_frame(frames.OP_BINARY, bomb, rsv=0x40)) == 1009  # beyond DISCARD_LIMIT


@pytest.mark.parametrize("size, limit, allowed", [(1000, 1000, True), (1001, 1000, False)])
def test_the_inflated_size_counts_against_the_message_limit(size, limit, allowed):
    payload = client_compress(zlib.compressobj(6, zlib.DEFLATED, -15), b"a" * size)
    data = client_frame(frames.OP_TEXT, payload, rsv=0x40)
    expected = frames.Message(b"a" * size, False) if allowed else frames.Oversize(binary=False)
    assert events(parser(max_message=limit), data) == [expected]


def _context_messages(oversize: bytes) -> tuple[bytes, bytes, bytes]:
    """An oversize message, then one that refers back into it (context takeover), as a client sends them."""
    compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
    after = oversize[100:700]
    first = client_compress(compressor, oversize)
    second = client_compress(compressor, after)
    assert len(second) < 100  # mostly a reference into the skipped message
    return first, second, after


@pytest.mark.parametrize("kind", ["inflates-over", "wire-over"])
def test_a_skipped_compressed_message_still_feeds_the_window_the_next_one_refers_to(kind):
    # Under the wire limit but over once inflated, or over it on the wire too (random bytes do not shrink).
    oversize = b"abc" * 700 if kind == "inflates-over" else os.urandom(3000)
    first, second, after = _context_messages(oversize)
    data = (client_frame(frames.OP_BINARY, first[:len(first) // 2], fin=False, rsv=0x40)
            + client_frame(frames.OP_CONTINUATION, first[len(first) // 2:])
            + client_frame(frames.OP_TEXT, second, rsv=0x40))
    for split in (0, 3, 1000):  # the masks of skipped pieces line up however the bytes arrive
        p = parser(max_message=2000)
        pieces = [data] if not split else [data[i:i + split] for i in range(0, len(data), split)]
        found = [e for piece in pieces for e in events(p, piece)]
        assert found == [frames.Oversize(binary=True), frames.Message(after, False)]


def test_without_context_takeover_a_skipped_message_is_not_inflated_at_all():
    p = parser(frames.DeflateParams(client_no_context_takeover=True), max_message=100)
    bomb = client_compress(zlib.compressobj(9, zlib.DEFLATED, -15), bytes(50_000_000))
    fresh = client_compress(zlib.compressobj(6, zlib.DEFLATED, -15), REPLY[:50])
    data = client_frame(frames.OP_BINARY, bomb, rsv=0x40) + client_frame(frames.OP_TEXT, fresh, rsv=0x40)
    assert events(p, data) == [frames.Oversize(binary=True), frames.Message(REPLY[:50], False)]


def test_data_that_does_not_inflate_closes_with_1007():
    assert refusal(parser(), client_frame(frames.OP_TEXT, b"\xff\xff\xff\xff", rsv=0x40)) == 1007


def test_a_reference_beyond_the_agreed_window_is_refused_not_misread():
    # The client was granted 9 bits (512 bytes) and refers back 1000 bytes into its previous message.
    chunk = os.urandom(300)
    compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
    p = parser(frames.DeflateParams(client_window_bits=9))
    first = chunk + os.urandom(700)
    (inflated,) = events(p, client_frame(frames.OP_BINARY, client_compress(compressor, first), rsv=0x40))
    assert inflated.data == first
    assert refusal(p, client_frame(frames.OP_BINARY, client_compress(compressor, chunk), rsv=0x40)) == 1007
