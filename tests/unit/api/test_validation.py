"""Text no store can hold (review 8 #5): refused by the API's validation, before any store sees it.

NUL is refused by PostgreSQL's text type (SQLite and Redis would keep it) and
an unpaired surrogate (a JSON "\\ud800" escape) has no UTF-8 encoding at all;
the API refuses both alike, so every store answers the same. Over real stores
and both transports: tests/functional/test_isolation.py, bad_inputs.py.
"""

from __future__ import annotations

import dataclasses

import jsonschema
import pytest

from zaqar.api import Api, Limits, Request, errors, validation

UNSTORABLE = ["\x00", "a\x00b", "\ud800", "a\udfff"]
NO_NUL = "may not contain NUL characters or unpaired surrogates"
OFF = dataclasses.replace(Limits(), client_id_uuid_safe="off")


@pytest.mark.parametrize("value", UNSTORABLE)
def test_project_ids_are_refused_as_malformed(value):
    with pytest.raises(errors.InvalidQueue) as refused:
        validation.project_id(value)
    assert refused.value.to_dict() == {"title": "Invalid queue identification",
                                       "description": "The format of the submitted queue name or project "
                                                      "id is not valid."}
    assert refused.value.detail == f"Project ids {NO_NUL}."  # the websocket's "exception"


@pytest.mark.parametrize("value", UNSTORABLE)
@pytest.mark.parametrize("field", ["marker", "name"])
def test_markers_and_name_filters_are_refused(value, field):
    with pytest.raises(errors.BadRequest) as refused:
        validation.string({field: value}, field)
    text = f'The "{field}" parameter is invalid. The value {NO_NUL}.'
    assert refused.value.to_dict() == {"title": "Invalid API request", "description": text}


def test_ids_are_left_to_the_contract_an_impossible_id_is_an_unknown_one():
    """http-v2.md §0.8, §4.8: a malformed claim id is 400 "Unable to delete", said by the handler."""
    assert validation.string({"claim_id": "a\x00"}, "claim_id") == "a\x00"
    assert validation.required_string({"message_id": "a\x00"}, "message_id") == "a\x00"


@pytest.mark.parametrize("value", UNSTORABLE)
def test_client_ids_of_the_off_mode_are_refused(value):
    """Strict mode wants a UUID, which holds no such character; the off mode only checks the length."""
    client_id = (value * 10)[:12]
    with pytest.raises(errors.BadRequest) as refused:
        validation.client_id(client_id, OFF)
    assert refused.value.to_dict() == {"title": "Invalid API request",
                                       "description": f'The "Client-ID" header {NO_NUL}.'}
    assert validation.client_id("0123456789ab", OFF) == "0123456789ab"


@pytest.mark.parametrize(("document", "where"), [
    ({"uri": "sqlite:///x\x00"}, "uri"), ({"options": {"k\ud800": 1}}, "options.k\ud800"),
    ({"pool_list": ["a", "b\x00"]}, "pool_list.1"), ("\x00", "body"),
])
def test_pool_and_flavor_documents_are_refused_where_the_text_is(document, where):
    with pytest.raises(errors.InvalidBody) as refused:
        validation.document(jsonschema.Draft4Validator({}), document)
    assert refused.value.description == f"{where}: the value {NO_NUL}"


def test_the_common_path_is_unchanged(api):
    """Ordinary values pass, whatever their script: only NUL and unpaired surrogates are refused."""
    assert validation.project_id("projet-été-🐢") == "projet-été-🐢"
    assert validation.string({"marker": "zz"}, "marker") == "zz"
    reply = Api(api.ctx).handle(Request("queue_list", project_id="p", params={"marker": "a"}))
    assert reply.status == 200


def test_an_off_mode_nul_client_id_never_reaches_the_store(api):
    api = Api(dataclasses.replace(api.ctx, limits=OFF))
    posted = api.handle(Request("message_post", project_id="p", client_id="client\x00id01",
                                params={"queue_name": "q", "messages": [{"body": 1, "ttl": 60}]}))
    assert (posted.status, posted.body) == (400, {"title": "Invalid API request",
                                                  "description": f'The "Client-ID" header {NO_NUL}.'})
    assert Api(api.ctx).handle(Request("queue_get_stats", project_id="p",
                                       params={"queue_name": "q"})).body["messages"]["total"] == 0
