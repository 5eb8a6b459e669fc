"""python-zaqarclient, unmodified, driving a real zaqar-server over a real socket.

The client is a fixed external consumer (docs/api/client-compat.md): every
queue, message and claim call it offers must work against the server as a
user would write it. One server serves the whole module; each test works in
its own project, so tests never see each other's queues.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator

import pytest
from zaqarclient.queues import client as zaqar
from zaqarclient.queues.v2 import message as zmessage
from zaqarclient.transport import errors

from tests.server import ServerProcess, running_server

pytestmark = pytest.mark.slow

RESERVED_DEFAULTS = {
    "_max_messages_post_size": 262144,
    "_default_message_ttl": 3600,
    "_default_message_delay": 0,
    "_dead_letter_queue": None,
    "_dead_letter_queue_messages_ttl": None,
    "_max_claim_count": None,
    "_enable_encrypt_messages": False,
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with running_server(tmp_path_factory.mktemp("zaqarclient")) as running:
        yield running


def _client(url: str, project: str) -> zaqar.Client:
    return zaqar.Client(
        url, version=2, conf={"auth_opts": {"backend": "noauth", "options": {"os_project_id": project}}}
    )


@pytest.fixture
def project() -> str:
    return f"project-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def client(server: ServerProcess, project: str) -> zaqar.Client:
    return _client(server.url, project)


@pytest.fixture
def other_client(server: ServerProcess, project: str) -> zaqar.Client:
    """A second consumer of the same project, with its own Client-ID."""
    return _client(server.url, project)


def _take_all(iterator, bound: int) -> list:  # type: ignore[no-untyped-def]
    """Drain a client iterator, but never loop forever if the server keeps handing out next links."""
    items = list(itertools.islice(iterator, bound + 1))
    assert len(items) <= bound, "the iterator did not stop: the server keeps returning next links"
    return items


def _post_bodies(queue, bodies: list, ttl: int = 600) -> list[str]:  # type: ignore[no-untyped-def]
    hrefs = queue.post([{"body": body, "ttl": ttl} for body in bodies])["resources"]
    return [href.rsplit("/", 1)[-1] for href in hrefs]


# --- client object -----------------------------------------------------------------------------


def test_ping_is_true(client: zaqar.Client) -> None:
    assert client.ping() is True


def test_homedoc_lists_the_v2_resources(client: zaqar.Client) -> None:
    resources = client.homedoc()["resources"]
    for rel in ("rel/queues", "rel/queue", "rel/messages", "rel/post_messages", "rel/post_claim",
                "rel/claim", "rel/ping"):
        assert rel in resources
    assert resources["rel/queue"]["href-template"] == "/v2/queues/{queue_name}"
    assert resources["rel/post_claim"]["hints"]["allow"] == ["POST"]
    assert "rel/pools" not in resources, "admin resources must stay hidden without admin_mode"


# --- queues ------------------------------------------------------------------------------------


def test_force_create_exists_and_delete(client: zaqar.Client) -> None:
    assert client.queue("jobs", auto_create=False).exists() is False
    queue = client.queue("jobs", force_create=True)
    assert queue.exists() is True
    queue.delete()
    assert queue.exists() is False
    assert [q.name for q in _take_all(client.queues()[0].stream(), 5)] == []


def test_posting_creates_the_queue_lazily(client: zaqar.Client) -> None:
    queue = client.queue("lazy")  # auto_create sends nothing
    assert queue.exists() is False
    queue.post({"body": "hello"})
    assert queue.exists() is True


def test_queues_are_scoped_to_the_project(server: ServerProcess, client: zaqar.Client) -> None:
    client.queue("mine", force_create=True)
    stranger = _client(server.url, f"other-{uuid.uuid4().hex[:8]}")
    assert stranger.queue("mine", auto_create=False).exists() is False
    assert _take_all(stranger.queues()[0].stream(), 5) == []


def test_queue_listing_follows_next_links_to_the_end(client: zaqar.Client) -> None:
    names = [f"queue-{i:02d}" for i in range(23)]
    for name in reversed(names):
        client.queue(name, force_create=True)

    listing, count = client.queues(with_count=True)
    assert count == 23
    assert [q.name for q in _take_all(listing.stream(), 30)] == names

    small_pages, _ = client.queues(limit=5)
    assert [q.name for q in _take_all(small_pages.stream(), 30)] == names


def test_queue_listing_ends_on_an_exactly_full_last_page(client: zaqar.Client) -> None:
    names = [f"q{i:02d}" for i in range(20)]
    for name in names:
        client.queue(name, force_create=True)
    listing, _ = client.queues(limit=10)
    assert [q.name for q in _take_all(listing.stream(), 25)] == names


def test_detailed_listing_carries_metadata(client: zaqar.Client) -> None:
    client.queue("detailed", force_create=True).metadata({"owner": "ops"})
    [queue] = _take_all(client.queues(detailed=True)[0].stream(), 5)
    assert queue.metadata() == {"owner": "ops", **RESERVED_DEFAULTS}


def test_metadata_defaults_set_replace_and_remove(client: zaqar.Client) -> None:
    queue = client.queue("meta", force_create=True)
    assert queue.metadata() == RESERVED_DEFAULTS

    # The client turns this into add/replace ops plus `remove` for every other key the GET
    # returned -- the reserved keys included, which must not be rejected.
    updated = queue.metadata({"color": "red", "_default_message_ttl": 120})
    assert updated == {**RESERVED_DEFAULTS, "color": "red", "_default_message_ttl": 120}
    assert queue.metadata(force_reload=True) == updated

    replaced = queue.metadata({"color": "blue", "size": 3})
    assert replaced == {**RESERVED_DEFAULTS, "color": "blue", "size": 3}

    assert queue.metadata({}) == RESERVED_DEFAULTS
    assert client.queue("meta", auto_create=False).metadata() == RESERVED_DEFAULTS


def test_reserved_metadata_takes_effect(client: zaqar.Client) -> None:
    queue = client.queue("short-lived", force_create=True)
    queue.metadata({"_default_message_ttl": 90})
    queue.post({"body": "no ttl given"})
    [msg] = _take_all(queue.messages(echo=True), 5)
    assert msg.ttl == 90


def test_invalid_reserved_metadata_is_malformed(client: zaqar.Client) -> None:
    queue = client.queue("bad-meta", force_create=True)
    with pytest.raises(errors.MalformedRequest):
        queue.metadata({"_default_message_ttl": 5})
    assert queue.metadata(force_reload=True) == RESERVED_DEFAULTS


def test_stats_count_free_and_claimed(client: zaqar.Client) -> None:
    queue = client.queue("stats", force_create=True)
    assert queue.stats == {"messages": {"claimed": 0, "free": 0, "total": 0}}
    ids = _post_bodies(queue, ["a", "b", "c"])
    queue.claim(ttl=60, grace=60, limit=1)
    stats = queue.stats["messages"]
    assert (stats["claimed"], stats["free"], stats["total"]) == (1, 2, 3)
    assert stats["oldest"]["href"] == f"/v2/queues/stats/messages/{ids[0]}"
    assert stats["newest"]["href"] == f"/v2/queues/stats/messages/{ids[-1]}"


def test_purge_empties_the_queue_but_keeps_it_and_its_metadata(client: zaqar.Client) -> None:
    queue = client.queue("purged", force_create=True)
    queue.metadata(new_meta={"color": "blue"})
    _post_bodies(queue, list(range(4)))
    queue.purge()
    assert list(queue.messages(echo=True)) == []
    assert queue.stats["messages"]["total"] == 0
    assert queue.exists()
    assert queue.metadata(force_reload=True)["color"] == "blue"


def test_purge_of_messages_only_keeps_subscriptions(client: zaqar.Client) -> None:
    queue = client.queue("purged-messages", force_create=True)
    _post_bodies(queue, [1, 2])
    client.subscription("purged-messages", subscriber="http://127.0.0.1:9/hook", ttl=3600)
    queue.purge(resource_types=["messages"])
    assert list(queue.messages(echo=True)) == []
    assert [s.subscriber for s in queue.subscriptions()] == ["http://127.0.0.1:9/hook"]


@pytest.mark.parametrize("policy, allowed", [(None, False), ('"health:get": ""', True)],
                         ids=["default-policy", "relaxed-policy"])
def test_health_is_admin_only_unless_a_policy_file_opens_it(tmp_path, project: str, policy, allowed) -> None:
    """client-compat.md 5 #9: a noauth client sends no X-Roles, so operators relax health:get."""
    options: dict[str, dict[str, str]] = {"DEFAULT": {"admin_mode": "true"}}
    if policy is not None:
        (tmp_path / "policy.yaml").write_text(policy + "\n")
        options["oslo_policy"] = {"policy_file": str(tmp_path / "policy.yaml")}
    with running_server(tmp_path / "server", transports=("wsgi",), options=options) as admin_server:
        client = _client(admin_server.url, project)
        if not allowed:
            with pytest.raises(errors.ForbiddenError):
                client.health()
            return
        health = client.health()
    assert health["storage_reachable"] is True
    assert "operation_status" in health


def test_delete_queue_removes_its_messages(client: zaqar.Client) -> None:
    queue = client.queue("doomed")
    _post_bodies(queue, ["x", "y"])
    queue.delete()
    assert queue.exists() is False
    assert _take_all(queue.messages(echo=True), 5) == []
    assert queue.stats["messages"]["total"] == 0


# --- messages ----------------------------------------------------------------------------------


def test_post_single_and_batch(client: zaqar.Client) -> None:
    queue = client.queue("posts")
    single = queue.post({"body": {"event": "one"}, "ttl": 300})
    batch = queue.post([{"body": {"event": "two"}}, {"body": None, "ttl": 120}])
    assert len(single["resources"]) == 1 and len(batch["resources"]) == 2
    hrefs = single["resources"] + batch["resources"]
    assert all(href.startswith("/v2/queues/posts/messages/") for href in hrefs)

    listed = _take_all(queue.messages(echo=True), 5)
    assert [m.body for m in listed] == [{"event": "one"}, {"event": "two"}, None]
    assert [m.ttl for m in listed] == [300, 3600, 120]
    assert all(m.age >= 0 and m.claim_id is None for m in listed)


def test_message_listing_pages_to_the_end_in_post_order(client: zaqar.Client) -> None:
    queue = client.queue("many")
    expected = _post_bodies(queue, [{"n": i} for i in range(7)])
    for i in range(7, 25):
        expected += _post_bodies(queue, [{"n": i}])

    first_page = _take_all(queue.messages(echo=True), 30)
    assert len(first_page) == 10, "without stream() the client reads one page (default limit 10)"

    everything = _take_all(queue.messages(echo=True).stream(), 30)
    assert [m.id for m in everything] == expected
    assert [m.body for m in everything] == [{"n": i} for i in range(25)]

    small_pages = _take_all(queue.messages(echo=True, limit=4).stream(), 30)
    assert [m.id for m in small_pages] == expected


def test_echo_false_hides_a_clients_own_messages(client: zaqar.Client, other_client: zaqar.Client) -> None:
    mine = client.queue("echo")
    _post_bodies(mine, ["from me"])
    assert _take_all(mine.messages(echo=False).stream(), 5) == []
    assert [m.body for m in _take_all(mine.messages(echo=True).stream(), 5)] == ["from me"]
    theirs = other_client.queue("echo", auto_create=False)
    assert [m.body for m in _take_all(theirs.messages().stream(), 5)] == ["from me"]


def test_get_one_and_many_by_id(client: zaqar.Client) -> None:
    queue = client.queue("by-id")
    ids = _post_bodies(queue, [f"m{i}" for i in range(5)])

    one = queue.message(ids[2])
    assert (one.id, one.body, one.ttl) == (ids[2], "m2", 600)
    assert one.href == f"/v2/queues/by-id/messages/{ids[2]}"

    some = _take_all(queue.messages(ids[0], ids[3], ids[4]), 5)
    assert {m.id: m.body for m in some} == {ids[0]: "m0", ids[3]: "m3", ids[4]: "m4"}

    with pytest.raises(errors.ResourceNotFound):
        queue.message("0000000000000099deadbeef")


def test_delete_messages_by_id(client: zaqar.Client) -> None:
    queue = client.queue("bulk")
    ids = _post_bodies(queue, ["a", "b", "c", "d"])
    queue.delete_messages(ids[0], ids[2])
    assert [m.id for m in _take_all(queue.messages(echo=True), 5)] == [ids[1], ids[3]]
    with pytest.raises(errors.ResourceNotFound):
        _take_all(queue.messages(ids[0], ids[2]), 5)


def test_message_delete(client: zaqar.Client) -> None:
    queue = client.queue("single-delete")
    ids = _post_bodies(queue, ["keep", "drop"])
    queue.message(ids[1]).delete()
    with pytest.raises(errors.ResourceNotFound):
        queue.message(ids[1])
    assert [m.body for m in _take_all(queue.messages(echo=True), 5)] == ["keep"]


def test_pop_removes_oldest_first(client: zaqar.Client) -> None:
    queue = client.queue("pops")
    ids = _post_bodies(queue, ["first", "second", "third"])
    popped = _take_all(queue.pop(2), 5)
    assert [(m.id, m.body) for m in popped] == [(ids[0], "first"), (ids[1], "second")]
    assert [m.id for m in _take_all(queue.messages(echo=True), 5)] == [ids[2]]
    assert _take_all(client.queue("never-posted").pop(), 5) == []


# --- claims ------------------------------------------------------------------------------------


def test_claim_returns_the_oldest_messages_with_its_id(client: zaqar.Client) -> None:
    queue = client.queue("work")
    ids = _post_bodies(queue, ["j0", "j1", "j2"])
    claim = queue.claim(ttl=120, grace=60, limit=2)
    claimed = list(claim)
    assert [(m.id, m.body) for m in claimed] == [(ids[0], "j0"), (ids[1], "j1")]
    assert claim.id and all(m.claim_id == claim.id for m in claimed)
    assert all(m.href.endswith(f"?claim_id={claim.id}") for m in claimed)

    # Claimed messages are hidden from other claims and from the default listing.
    [rest] = list(queue.claim(ttl=60, grace=60))
    assert rest.id == ids[2]
    empty = queue.claim(ttl=60, grace=60)
    assert empty.id is None and list(empty) == []
    assert _take_all(queue.messages(echo=True), 5) == []
    assert len(_take_all(queue.messages(echo=True, include_claimed=True), 5)) == 3


def test_claim_can_be_read_back_by_id(client: zaqar.Client) -> None:
    queue = client.queue("readback")
    ids = _post_bodies(queue, ["a", "b"])
    cid = queue.claim(ttl=200, grace=60).id
    again = queue.claim(id=cid)
    assert again.ttl == 200
    assert 0 <= again.age < 30
    assert sorted(m.id for m in again) == sorted(ids)
    with pytest.raises(errors.ResourceNotFound):
        queue.claim(id="0123456789abcdef0123456789abcdef").age  # noqa: B018


def test_claim_renew_updates_its_ttl(client: zaqar.Client) -> None:
    queue = client.queue("renew")
    _post_bodies(queue, ["slow job"], ttl=60)
    claim = queue.claim(ttl=60, grace=60)
    claim.update(ttl=500, grace=120)
    fresh = queue.claim(id=claim.id)
    assert fresh.ttl == 500
    [msg] = list(fresh)
    assert msg.ttl == 620, "a renewal extends short-lived messages to claim ttl + grace"


def test_released_claim_makes_messages_claimable_again(client: zaqar.Client) -> None:
    queue = client.queue("release")
    ids = _post_bodies(queue, ["a", "b"])
    claim = queue.claim(ttl=300, grace=60)
    assert queue.claim(ttl=60, grace=60).id is None
    claim.delete()
    with pytest.raises(errors.ResourceNotFound):
        queue.claim(id=claim.id).ttl  # noqa: B018
    assert queue.message(ids[0]).claim_id is None
    reclaimed = queue.claim(ttl=60, grace=60)
    assert reclaimed.id not in (None, claim.id)
    assert [m.id for m in reclaimed] == ids


def test_claimed_message_deleted_with_its_claim_id(client: zaqar.Client) -> None:
    queue = client.queue("ack")
    ids = _post_bodies(queue, ["done", "pending"])
    claim = queue.claim(ttl=120, grace=60, limit=1)
    [msg] = list(claim)
    msg.delete()  # sends ?claim_id=<claim id> taken from the message href
    with pytest.raises(errors.ResourceNotFound):
        queue.message(ids[0])
    assert [m.id for m in _take_all(queue.messages(echo=True), 5)] == [ids[1]]


def test_claimed_message_cannot_be_deleted_without_claim_id(
    client: zaqar.Client, other_client: zaqar.Client
) -> None:
    queue = client.queue("guarded")
    [mid] = _post_bodies(queue, ["precious"])
    # A stale copy fetched before the claim: its href has no claim id, so delete() sends none.
    [stale] = _take_all(other_client.queue("guarded", auto_create=False).messages(), 5)
    assert isinstance(stale, zmessage.Message) and stale.claim_id is None

    claim = queue.claim(ttl=120, grace=60)
    with pytest.raises(errors.ForbiddenError) as raised:
        stale.delete()
    assert raised.value.code == 403
    still_there = queue.message(mid)
    assert still_there.claim_id == claim.id and still_there.body == "precious"


def test_claim_arguments_out_of_range_are_malformed(client: zaqar.Client) -> None:
    queue = client.queue("limits")
    _post_bodies(queue, ["x"])
    for kwargs in ({"ttl": 10, "grace": 60}, {"ttl": 43201, "grace": 60}, {"ttl": 60, "grace": 10},
                   {"ttl": 60, "grace": 60, "limit": 21}):
        with pytest.raises(errors.MalformedRequest):
            queue.claim(**kwargs)
    # The rejected claims claimed nothing.
    assert [m.body for m in queue.claim(ttl=60, grace=60)] == ["x"]


def test_claim_without_ttl_and_grace_is_malformed(client: zaqar.Client) -> None:
    """The client sends ``"ttl": null``; like upstream, the server rejects it (client-compat §5 #3)."""
    queue = client.queue("nulls")
    _post_bodies(queue, ["x"])
    with pytest.raises(errors.MalformedRequest):
        queue.claim()


def test_errors_carry_title_and_description(client: zaqar.Client) -> None:
    with pytest.raises(errors.MalformedRequest) as raised:
        client.queue("titles").claim(ttl=1, grace=60)
    text = str(raised.value)
    assert "Code: 400. Title: Invalid API request." in text
    assert "The TTL for a claim may not exceed 43200 seconds" in text


def test_setting_metadata_on_a_missing_queue_is_not_found(client: zaqar.Client) -> None:
    """GET answers defaults for any name, but the PATCH that follows is a 404 (http-v2.md §3.5)."""
    queue = client.queue("ghost")
    with pytest.raises(errors.ResourceNotFound):
        queue.metadata({"a": 1})


_OPEN_POOLS = "\n".join(f'"{rule}": ""' for rule in (
    "pools:get_all", "pools:get", "pools:create", "pools:update", "pools:delete",
    "flavors:create", "flavors:update", "flavors:delete"))


def test_pools_and_flavors_through_the_client_on_a_pooled_server(tmp_path, project: str) -> None:
    """client-compat.md 2.3: pool and flavor calls, with a policy file opening them to noauth clients."""
    (tmp_path / "policy.yaml").write_text(_OPEN_POOLS + "\n")
    options = {"DEFAULT": {"admin_mode": "true", "pooling": "true"},
               "oslo_policy": {"policy_file": str(tmp_path / "policy.yaml")}}
    with running_server(tmp_path / "server", transports=("wsgi",), options=options) as pooled:
        client = _client(pooled.url, project)
        uris = [f"sqlite:///{tmp_path / f'pool-{n}.sqlite'}" for n in range(2)]
        client.pool("p0", weight=10, uri=uris[0], options={"note": "first"})
        client.pool("p1", weight=20, uri=uris[1])
        assert [p.name for p in client.pools()] == ["p0", "p1"]
        p0 = client.pool("p0", auto_create=False)
        assert p0.get()["uri"] == uris[0]
        p0.update({"weight": 5})
        assert p0.get()["weight"] == 5
        client.flavor("gold", pool_list=["p1"])
        assert [f.name for f in client.flavors()] == ["gold"]
        gold = client.flavor("gold", auto_create=False)
        assert gold.get()["pool_list"] == ["p1"]
        # The v2 client creates queues without metadata, so no _flavor: this one goes to p0, the
        # pool that belongs to no flavor.
        queue = client.queue("plain")
        queue.post({"body": "on p0", "ttl": 300})
        assert [m.body for m in queue.messages(echo=True)] == ["on p0"]
        with pytest.raises(errors.ForbiddenError):  # still used by the flavor: 403
            client.pool("p1", auto_create=False).delete()
        with pytest.raises(errors.ConflictError):  # still holds a queue: 409
            p0.delete()
        gold.delete()
        assert list(client.flavors()) == []
        client.pool("p1", auto_create=False).delete()
        assert [p.name for p in client.pools()] == ["p0"]
        queue.delete()
        p0.delete()
        assert list(client.pools()) == []
