"""The websocket protocol without sockets: bad frames, envelopes and encodings."""

from __future__ import annotations

import json

import msgpack
import pytest

from zaqar.api import Api, Context
from zaqar.api.operations import OPERATIONS
from zaqar.transport.websocket import protocol, schemas

H = {"Client-ID": "3381af92-2b9e-11e3-b191-71861300734c", "X-Project-ID": "p"}
NO_REQUEST = {"action": None, "body": {}, "headers": {}, "api": "v2"}

# Operations the websocket protocol deliberately lacks (websocket.md §6.1: "there is no websocket
# equivalent of queue PATCH ..."): queue_exists is HTTP HEAD, queue_update is HTTP PATCH and
# get_versions is HTTP's version discovery at "/", queue_share creates pre-signed URLs (websocket.md
# §12: no share action). Everything else must be reachable over both.
HTTP_ONLY = {"queue_exists", "queue_update", "get_versions", "queue_share"}


def test_every_operation_is_reachable_over_the_websocket_or_listed_http_only():
    assert set(OPERATIONS) - schemas.ACTIONS == HTTP_ONLY
    assert schemas.ACTIONS - set(OPERATIONS) == {"authenticate"}


def _frame(api, document, binary):
    raw = msgpack.packb(document, use_bin_type=True) if binary else json.dumps(document).encode()
    reply = protocol.handle_frame(api, raw, binary)
    return msgpack.unpackb(reply, raw=False) if binary else json.loads(reply)


def _stored(api):
    store = api.ctx.store
    return [(m.id, m.body) for m in store.messages.list("p", "q", echo=True, include_claimed=True, limit=20)]


@pytest.fixture(params=["json", "msgpack"])
def binary(request):
    return request.param == "msgpack"


@pytest.mark.parametrize("raw, text", [
    (b"{", "Can't decode text (JSON) request. JSONDecodeError"),
    (b"\xff\xfe", "Can't decode text (JSON) request. UnicodeDecodeError"),
])
def test_undecodable_text_is_400_and_echoes_no_request(api, raw, text):
    reply = json.loads(protocol.handle_frame(api, raw, False))
    assert reply["request"] == NO_REQUEST
    assert reply["headers"] == {"status": 400}
    assert reply["body"]["error"].startswith(text)


def test_undecodable_msgpack_is_answered_in_msgpack(api):
    reply = msgpack.unpackb(protocol.handle_frame(api, b"\xc1", True), raw=False)
    assert reply["headers"] == {"status": 400}
    assert reply["body"]["error"].startswith("Can't decode binary (MessagePack) request.")


@pytest.mark.parametrize("document, status, error", [
    ([1, 2], 400, "Unexpected body type. Expected dict or dict like."),
    ("text", 400, "Unexpected body type. Expected dict or dict like."),
    ({"headers": H}, 400, "None is not a valid action"),
    ({"action": "queue_explode", "headers": H}, 400, "queue_explode is not a valid action"),
    ({"action": "queue_update", "headers": H, "body": {"queue_name": "q"}}, 400,
     "queue_update is not a valid action"),
    ({"action": "queue_get", "body": {"queue_name": "q"}}, 400, "Schema validation failed."),
    ({"action": "queue_get", "headers": H}, 400, "Schema validation failed."),
    ({"action": "queue_get", "headers": H, "body": {"queue_name": 5}}, 400, "Schema validation failed."),
    ({"action": "message_post", "headers": H, "body": {"queue_name": "q", "messages": {}}}, 400,
     "Schema validation failed."),
    ({"action": "claim_create", "headers": H, "body": {"queue_name": "q", "ttl": "60"}}, 400,
     "Schema validation failed."),
    ({"action": "queue_list", "headers": {"Client-ID": 5, "X-Project-ID": "p"}}, 400,
     "Schema validation failed."),
    ({"action": "authenticate", "headers": {"X-Project-ID": "p"}}, 400, "Schema validation failed."),
])
def test_bad_envelopes_get_400_and_change_nothing(api, binary, document, status, error):
    _frame(api, {"action": "message_post", "headers": H,
                 "body": {"queue_name": "q", "messages": [{"body": "keep"}]}}, binary)
    before = _stored(api)
    reply = _frame(api, document, binary)
    assert reply["headers"] == {"status": status}
    assert reply["body"] == {"error": error}
    assert _stored(api) == before


@pytest.mark.parametrize("body, exception", [
    ({"queue_name": "q", "messages": [{"ttl": 60}]}, 'Bad request. Missing "body" field.'),
    ({"queue_name": "q", "messages": [{"body": 1, "ttl": 30}]},
     "The TTL for a message may not exceed 1209600 seconds, and must be at least 60 seconds long."),
    ({"queue_name": "q", "messages": []}, "No messages to enqueu."),
    ({"queue_name": "q" * 65, "messages": [{"body": 1}]},
     "Queue names may not be more than 64 characters long."),
    ({"queue_name": "a b", "messages": [{"body": 1}]},
     "Queue names may only contain ASCII letters, digits, underscores, and dashes."),
])
def test_handler_errors_use_the_exception_shape(api, binary, body, exception):
    reply = _frame(api, {"action": "message_post", "headers": H, "body": body}, binary)
    assert reply["headers"] == {"status": 400}
    assert reply["body"] == {"exception": exception, "error": None}
    assert _stored(api) == []


POOL_ADMIN = sorted(f"{resource}_{verb}" for resource in ("pool", "flavor")
                    for verb in ("list", "create", "get", "update", "delete"))


@pytest.mark.parametrize("action", POOL_ADMIN)
def test_pool_admin_actions_without_pooling_answer_404_not_400(api, binary, action):
    name = {"pool_name": "p"} if action.startswith("pool") else {"flavor_name": "f"}
    reply = _frame(api, {"action": action, "headers": H, "body": name}, binary)
    assert reply["headers"] == {"status": 404}
    assert reply["body"] == {"exception": f"{action} is not available on this server.", "error": None}


def test_bad_client_id_on_post_is_400(api, binary):
    headers = {"Client-ID": "not-a-uuid", "X-Project-ID": "p"}
    reply = _frame(api, {"action": "message_post", "headers": headers,
                         "body": {"queue_name": "q", "messages": [{"body": 1}]}}, binary)
    assert reply["headers"] == {"status": 400}
    assert reply["body"]["exception"] == "badly formed hexadecimal UUID string"


def test_msgpack_bin_values_are_refused(api):
    document = {"action": "message_post", "headers": H, "body": {"queue_name": "q", "messages": [
        {"body": b"\x00\x01"}]}}
    reply = _frame(api, document, True)
    assert reply["body"] == {"error": "Schema validation failed."}


def test_reply_echoes_the_request(api, binary):
    document = {"action": "queue_create", "headers": H, "body": {"queue_name": "q"}}
    reply = _frame(api, document, binary)
    assert reply["request"] == {**document, "api": "v2"}
    assert (reply["headers"], reply["body"]) == ({"status": 201}, "Queue q created.")


def test_authenticate_answers_without_an_auth_strategy(api, binary):
    reply = _frame(api, {"action": "authenticate", "headers": {"X-Auth-Token": "t", "X-Project-ID": "p"}},
                   binary)
    assert reply["headers"] == {"status": 200}
    assert reply["body"] == {"message": "Authentified."}
    assert reply["request"] == {"action": "authenticate", "body": {}, "headers": {}, "api": "v2"}


def test_omitted_body_counts_as_empty(api, binary):
    reply = _frame(api, {"action": "queue_list", "headers": H}, binary)
    assert (reply["headers"], reply["body"]) == ({"status": 200}, {"queues": []})


def test_empty_project_is_refused(api, binary):
    reply = _frame(api, {"action": "queue_list", "headers": {**H, "X-Project-ID": ""}}, binary)
    assert reply["headers"] == {"status": 400}


def test_unavailable_admin_action_is_404_not_a_drop(api, binary):
    plain = Api(Context(store=api.ctx.store))  # admin_mode off
    reply = _frame(plain, {"action": "check_node_health", "headers": {}}, binary)
    assert reply["headers"] == {"status": 404}
    assert reply["body"] == {"exception": "check_node_health is not available on this server.", "error": None}


def _nested(depth):
    value = "leaf"
    for _ in range(depth):
        value = {"k": value}
    return value


def test_deeply_nested_bodies_are_answered_not_dropped(api, binary):
    post = {"action": "message_post", "headers": H,
            "body": {"queue_name": "q", "messages": [{"body": _nested(400)}]}}
    assert _frame(api, post, binary)["headers"] == {"status": 201}
    if not binary:  # beyond the decoder's depth: a decode error, still a reply
        raw = b'{"a":' * 5000 + b"1" + b"}" * 5000
        reply = json.loads(protocol.handle_frame(api, raw, False))
        assert reply["headers"] == {"status": 400}


@pytest.mark.parametrize("value, binary, error", [
    (2**70, False, "JSON contains integer that is too large."),
    (-(2**64), False, "JSON contains integer that is too large."),
    (2**64 - 1, True, "JSON contains integer that is too large."),  # msgpack uint64 beyond int64
    (float("inf"), True, "Schema validation failed."),
])
def test_values_without_a_json_form_are_refused(api, value, binary, error):
    document = {"action": "message_post", "headers": H,
                "body": {"queue_name": "q", "messages": [{"body": {"n": value}}]}}
    reply = _frame(api, document, binary)
    assert (reply["headers"], reply["body"]) == ({"status": 400}, {"error": error})
    assert _stored(api) == []


def test_nan_in_json_text_is_a_decode_error(api):
    raw = b'{"action": "message_post", "headers": {}, "body": {"messages": [{"body": NaN}]}}'
    reply = json.loads(protocol.handle_frame(api, raw, False))
    assert reply["headers"] == {"status": 400}
    assert reply["body"]["error"].startswith("Can't decode text (JSON) request.")


def test_an_unpaired_surrogate_is_a_decode_error_and_stores_nothing(api):
    """Stored, it could never be encoded again: every later listing of the queue would fail."""
    post = {"action": "message_post", "headers": H,
            "body": {"queue_name": "q", "messages": [{"body": "\ud800", "ttl": 300}]}}
    reply = json.loads(protocol.handle_frame(api, json.dumps(post).encode(), False))
    assert reply["headers"] == {"status": 400}
    assert reply["body"]["error"].startswith("Can't decode text (JSON) request.")
    assert api.ctx.store.queues.stats("p", "q").total == 0
    post["body"]["messages"][0]["body"] = "\ud83d\ude00"  # an escaped pair is one character: fine
    reply = json.loads(protocol.handle_frame(api, json.dumps(post).encode(), False))
    assert reply["headers"] == {"status": 201}


@pytest.mark.parametrize("ext", [msgpack.ExtType(5, b"xx"), msgpack.Timestamp(0)])
def test_msgpack_ext_types_are_refused(api, ext):
    document = {"action": "message_post", "headers": H,
                "body": {"queue_name": "q", "messages": [{"body": ext}]}}
    reply = msgpack.unpackb(protocol.handle_frame(api, msgpack.packb(document, datetime=False), True),
                            raw=False)
    assert (reply["headers"], reply["body"]) == ({"status": 400}, {"error": "Schema validation failed."})


@pytest.mark.parametrize("action, body", [
    ("message_post", {"queue_name": "q", "messages": [{"body": {b"k": 1}}]}),
    ("queue_create", {"queue_name": "q", "metadata": {b"k": 1}}),
])
def test_msgpack_bin_map_keys_are_refused_and_store_nothing(api, action, body):
    """JSON has string keys only; a ``bin`` key could never be stored and shown again (was a 500)."""
    document = {"action": action, "headers": H, "body": body}
    reply = msgpack.unpackb(protocol.handle_frame(api, msgpack.packb(document, use_bin_type=True), True),
                            raw=False)
    assert (reply["headers"], reply["body"]) == ({"status": 400}, {"error": "Schema validation failed."})
    assert not api.ctx.store.queues.exists("p", "q")


def test_http_only_parameters_are_ignored(api, binary):
    _frame(api, {"action": "queue_create", "headers": H, "body": {"queue_name": "a"}}, binary)
    reply = _frame(api, {"action": "queue_list", "headers": H,
                         "body": {"filters": [1], "with_count": True, "name": "zzz"}}, binary)
    assert (reply["headers"], reply["body"]) == ({"status": 200}, {"queues": [{"name": "a"}]})


def test_include_delayed_may_be_a_string(api, binary):
    _frame(api, {"action": "queue_create", "headers": H,
                 "body": {"queue_name": "q", "metadata": {"_default_message_delay": 60}}}, binary)
    _frame(api, {"action": "message_post", "headers": H,
                 "body": {"queue_name": "q", "messages": [{"body": 1}]}}, binary)
    body = {"queue_name": "q", "echo": True}
    assert _frame(api, {"action": "message_list", "headers": H, "body": body}, binary)["body"] == {
        "messages": []}
    listed = _frame(api, {"action": "message_list", "headers": H, "body": {**body, "include_delayed": "yes"}},
                    binary)
    assert [m["body"] for m in listed["body"]["messages"]] == [1]


@pytest.mark.parametrize("body, expected", [
    ({"flavor_name": "f", "pool_name": "p"}, {"flavor_name": "f", "pool_list": ["p"]}),
    ({"flavor_name": "f", "pool_name": "p", "pool_list": ["a"]}, {"flavor_name": "f", "pool_list": ["a"]}),
    ({"flavor_name": "f", "capabilities": {}}, {"flavor_name": "f", "capabilities": {}}),
])
def test_flavor_bodies_take_a_pool_name_as_a_one_element_pool_list(body, expected):
    for action in ("flavor_create", "flavor_update"):
        assert schemas.accepted(action, body) == expected


def test_pool_delete_reads_force():
    body = {"pool_name": "p", "force": True}
    assert schemas.accepted("pool_delete", body) == body
    assert schemas.valid("pool_delete", {"headers": H, "body": body})
    assert not schemas.valid("pool_delete", {"headers": H, "body": {**body, "force": "yes"}})


def _map16(document: dict) -> bytes:
    """A MessagePack map written with a 16-bit count, as some encoders do for small maps too."""
    return b"\xde" + len(document).to_bytes(2, "big") + b"".join(
        msgpack.packb(k) + msgpack.packb(v, use_bin_type=True) for k, v in document.items())


POSTED = {"action": "message_post", "headers": {**H, "X-Extra": ["kept"]},
          "body": {"queue_name": "echo", "messages": [{"body": {"é": "ü", "n": 1.5}, "ttl": 120}]}}


@pytest.mark.parametrize("raw, binary", [
    (json.dumps(POSTED).encode(), False),
    (b"  \n" + json.dumps(POSTED, indent=2, ensure_ascii=False).encode() + b" \n", False),
    (msgpack.packb(POSTED, use_bin_type=True), True),
    (msgpack.packb(POSTED, use_bin_type=False), True),  # legacy raw strings, as old clients send
    (_map16(POSTED), True),
], ids=["json", "json-spaced-unicode", "msgpack", "msgpack-legacy-raw", "msgpack-map16"])
def test_the_reply_echoes_the_request_as_sent_in_every_encoding(api, raw, binary):
    reply = protocol.handle_frame(api, raw, binary)
    document = msgpack.unpackb(reply, raw=False) if binary else json.loads(reply)
    assert document["request"] == {**POSTED, "api": "v2"}
    assert document["headers"] == {"status": 201}
    assert len(document["body"]["message_ids"]) == 1


def test_a_request_without_body_is_echoed_with_an_empty_one(api, binary):
    reply = _frame(api, {"action": "ping_node", "headers": H}, binary)
    assert reply["request"] == {"action": "ping_node", "headers": H, "body": {}, "api": "v2"}
