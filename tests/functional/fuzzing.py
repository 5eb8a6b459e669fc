"""What the fuzz tests (test_fuzz.py) generate and check: seeded state, strategies, error shapes.

``World`` is an Api with a frozen clock and a pre-signed URL key over one of
the stores (two pooled SQLite files, Redis or PostgreSQL), seeded with a
queue, messages (two under a claim) and a subscription, and can tell
everything a client could observe of two projects. Strategies draw requests
that are mostly almost right (real routes, real field names, real ids, grants
signed with the World's key), so the examples get past the first check and
reach the handlers and the store. Ids in generated values are placeholders
(``<free>``, ``<claimed>``, ``<cid>``, ``<sid>``) filled in from the current
seed when a request is sent; grants are signed then too (``signed_headers``).

Answers are checked against the contract, not only for their shape: an HTTP
error's title must be one of limits-and-errors.md §5.1, and since the stores
are up, no answer may claim a storage outage.
"""

from __future__ import annotations

import json
import re
import string
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import msgpack
import sqlalchemy as sa
from hypothesis import strategies as st

from tests.conftest import FakeClock
from zaqar import storage
from zaqar.api import Api, Context, Features, Request
from zaqar.notification.confirmation import signature
from zaqar.storage import pooling
from zaqar.transport.websocket import schemas
from zaqar.transport.wsgi import routes

PROJECT, OTHER = "fuzz", "fuzz-other"
QUEUE = "fizbit"
CLIENT_ID = str(uuid.uuid4())
SECRET = "fuzz-pre-signed-url-key"
PLACEHOLDERS = ("<free>", "<claimed>", "<cid>", "<sid>")
# A websocket 4xx may carry a non-error body where the contract says so (websocket.md §5).
WS_ERROR_BODIES_EXEMPT = {("queue_get_stats", 404), ("subscription_create", 409)}
# "pooled": two SQLite pools, with pools and flavors; the others: one store of that driver, admin mode.
STORES = ("pooled", "redis", "sqlalchemy")


def _redis_generation(uri: str, generation: int) -> str:
    """``uri`` with its key prefix extended for one generation (the test's cleanup covers it)."""
    parts = urlsplit(uri)
    query = dict(parse_qsl(parts.query))
    query["prefix"] = query.get("prefix", "zaqar:") + f"g{generation}:"
    return urlunsplit(parts._replace(query=urlencode(query)))


def _empty_sql_schema(uri: str) -> None:
    """Delete every row the store keeps (not its schema version), so a new generation starts empty.

    # PERF: a new schema per generation costs a migration each time (~0.3 s); this costs ~10 ms.
    """
    engine = sa.create_engine(uri, poolclass=sa.pool.NullPool)
    with engine.begin() as conn:
        tables = [row[0] for row in conn.execute(sa.text(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() "
            "AND tablename <> 'zaqar_schema_version'"))]
        if tables:
            conn.execute(sa.text("TRUNCATE " + ", ".join(f'"{t}"' for t in tables)))
    engine.dispose()


class World:
    """A seeded store behind one Api; ``rebuild`` starts over with a new seed.

    ``store`` names the kind (``STORES``); ``uri`` is the server's for redis and
    sqlalchemy (a private prefix or schema). The pooled kind has pooling and
    admin mode on, so pools, flavors and queue placement are fuzzed too; every
    kind has a pre-signed URL key, so share and URL-* headers get past the key check.
    """

    def __init__(self, root: Path, store: str = "pooled", uri: str | None = None) -> None:
        self.root, self.kind, self.uri = root, store, uri
        self.generation = 0
        self.store: Any = None
        self.rebuild()

    def _open(self, clock: FakeClock) -> Api:
        if self.kind == "redis":
            assert self.uri is not None
            self.store = storage.load_data_driver("redis", _redis_generation(self.uri, self.generation),
                                                  clock=clock)
        elif self.kind == "sqlalchemy":
            assert self.uri is not None
            _empty_sql_schema(self.uri)
            self.store = storage.load_data_driver("sqlalchemy", self.uri, clock=clock)
        else:
            files = self.root / f"fuzz-{self.generation}"
            files.mkdir()
            control = storage.load_control_driver("sqlite", f"sqlite:///{files / 'catalog.sqlite'}")
            for name in ("a", "b"):
                control.pools.create(name, f"sqlite:///{files / f'pool-{name}.sqlite'}", 100)
            control.flavors.create(PROJECT, "gold", ["b"])
            self.store = pooling.DataDriver(control, clock=clock)
            features = Features(admin_mode=True, pooling=True)
            return Api(Context(store=self.store, clock=clock, features=features, control=control,
                               pool_store=self.store.pool_store, signed_url_key=SECRET))
        return Api(Context(store=self.store, clock=clock, features=Features(admin_mode=True),
                           signed_url_key=SECRET))

    def rebuild(self) -> None:
        if self.store is not None:
            self.store.close()
        self.generation += 1
        self.api = self._open(FakeClock())
        self._call("queue_create", queue_name=QUEUE, metadata={"color": "blue", "_max_claim_count": 5})
        posted = self._call("message_post", queue_name=QUEUE,
                            messages=[{"body": {"n": n}, "ttl": 3600} for n in range(4)]).data
        claim_id, claimed = self._call("claim_create", queue_name=QUEUE, ttl=300, grace=60, limit=2).data
        sid, _ = self._call("subscription_create", queue_name=QUEUE, subscriber="http://127.0.0.1:1/h").data
        claimed_ids = [m.id for m in claimed]
        self.ids = {"<free>": next(m for m in posted if m not in claimed_ids), "<claimed>": claimed_ids[0],
                    "<cid>": claim_id, "<sid>": sid}
        self.reference = self.snapshot()

    def _call(self, action: str, project: str = PROJECT, **params: Any) -> Any:
        response = self.api.handle(Request(action, project_id=project, client_id=CLIENT_ID, params=params))
        assert response.status < 300, (action, response.body)
        return response

    def fill(self, value: Any) -> Any:
        """``value`` with every id placeholder replaced by the current seed's id."""
        if isinstance(value, str):
            for placeholder, real in self.ids.items():
                value = value.replace(placeholder, real).replace(quote(placeholder, safe=""), real)
            return value
        if isinstance(value, list):
            return [self.fill(v) for v in value]
        if isinstance(value, dict):
            return {self.fill(k): self.fill(v) for k, v in value.items()}
        return value

    def snapshot(self) -> dict[str, Any]:
        """Everything a client can observe of both projects (the clock is frozen: ages hold still)."""
        state: dict[str, Any] = {}
        for project in (PROJECT, OTHER):
            queues = self._call("queue_list", project, detailed=True, limit=20).body
            state[project] = queues
            for queue in [q["name"] for q in queues["queues"]]:
                state[f"{project}/{queue}"] = [
                    self._call(action, project, queue_name=queue, **params).body
                    for action, params in (("queue_get_stats", {}), ("subscription_list", {"limit": 20}),
                                           ("message_list", {"echo": True, "include_claimed": True,
                                                             "include_delayed": True, "limit": 20}))]
        for action in ("pool_list", "flavor_list"):
            state[action] = self.api.handle(Request(action, project_id=PROJECT, roles=frozenset({"admin"}),
                                                    params={"detailed": True, "limit": 20})).body
        claim = self.api.handle(Request("claim_get", project_id=PROJECT,
                                        params={"queue_name": QUEUE, "claim_id": self.ids["<cid>"]}))
        state["claim"] = (claim.status, claim.body)
        json.dumps(state, allow_nan=False)  # raises for stored numbers no client could read back
        return state

    def settle(self, rejected: bool, before: dict[str, Any]) -> None:
        """After one request: a rejected one must have changed nothing; an accepted one may have."""
        after = self.snapshot()
        if rejected:
            assert after == before, "a rejected request changed stored data"
        elif after != self.reference:
            self.rebuild()


# -- values -----------------------------------------------------------------------------------------
# Choices among n + 1 cases. NOTE: sampled_from spreads its picks evenly where integers() favours 0.
CHOICE = {n: st.sampled_from(range(n + 1)) for n in (2, 4, 9, 19)}


def mostly(good: st.SearchStrategy[Any], bad: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """``good`` nine times in ten, else ``bad``.

    Hypothesis favours small choices, so choice 0 must be the common case:
    requests that are mostly right get past the first check and reach the
    handlers and the store, where the interesting failures are.
    """
    return CHOICE[9].flatmap(lambda n: good if n < 9 else bad)


NUMBERS = st.sampled_from([0, -1, 1, 59, 60, 61, 300, 900, 43200, 43201, 1209600, 1209601, 2**31, 2**53 + 1,
                           2**63 - 1, 2**63, -(2**63) - 1, 2**64, 10**30]) | st.integers()
TEXT = st.text(max_size=40)
# Text no store can hold: NUL (PostgreSQL's text type refuses it) and unpaired surrogates (no UTF-8
# encoding exists). Over HTTP only NUL gets through (%00); surrogates come from JSON "\ud800" escapes.
UNSTORABLE = st.sampled_from(["\x00", "a\x00", "a\x00b", "fizbit\x00", "\ud800", "a\udfff", "\udc80\x00"])
IDS = st.sampled_from(PLACEHOLDERS) | st.sampled_from(["", "0" * 24, "zz", "-", "<free>,<claimed>"])
NAMES = mostly(st.sampled_from([QUEUE, "other", "dlq", "gold", "a", "b", "a" * 64, "."]),
               st.sampled_from(["a" * 65, "", "bad name", "ü"]) | TEXT | UNSTORABLE)
SCALARS = (st.none() | st.booleans() | NUMBERS | st.floats(allow_nan=False, allow_infinity=False) | TEXT
           | IDS | st.sampled_from([QUEUE, "http://127.0.0.1:1/h", "mailto:a@b", "/metadata/color", "add"]))
RESERVED = ["_default_message_ttl", "_max_messages_post_size", "_dead_letter_queue", "_max_claim_count",
            "_default_message_delay", "_dead_letter_queue_messages_ttl", "_flavor", "_retry_policy",
            "_enable_encrypt_messages"]
FIELD_NAMES = sorted(set(schemas._TYPES) | set(RESERVED) | {"body", "delay", "op", "path", "value"})
KEYS = st.sampled_from(FIELD_NAMES) | st.text(max_size=12)
JSON = st.recursive(SCALARS,
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=4),
                    max_leaves=12)
SMALL = st.sampled_from([0, 1, 2, 5, 10, 20, 21, 60, 300, 900, 3600])
TTL = mostly(st.sampled_from([60, 300, 3600, 43200]), SMALL | NUMBERS | st.floats() | JSON)
BOOL = mostly(st.booleans(), JSON)
RETRY_POLICY = st.fixed_dictionaries({}, optional={
    "retries_with_no_delay": mostly(SMALL, JSON), "minimum_delay": mostly(SMALL, JSON),
    "maximum_delay": mostly(SMALL, JSON), "retry_backoff_function": mostly(
        st.sampled_from(["linear", "arithmetic", "exponential", "geometric", "bogus"]), JSON),
    "ignore_subscription_override": BOOL})
META_VALUES = mostly(SMALL | NUMBERS | NAMES | st.booleans() | RETRY_POLICY, JSON)
META_KEYS = st.sampled_from(RESERVED + ["color", "tags"])
METADATA = mostly(st.dictionaries(META_KEYS, META_VALUES, max_size=3), JSON)
MESSAGE = mostly(st.fixed_dictionaries({"body": JSON}, optional={"ttl": TTL, "delay": TTL}), JSON)
OPTIONS = mostly(st.fixed_dictionaries({}, optional={"_retry_policy": mostly(RETRY_POLICY, JSON),
                                                    "post_headers": JSON}), JSON)
SUBSCRIBERS = mostly(st.sampled_from(["http://127.0.0.1:1/h", "http://127.0.0.1:1/other", "https://x.test/",
                                      "mailto:a@b.test", "trust+http://x/", "ftp://x/", "http://",
                                      "mailto:x", "http://x.test/\x00", "http://x.test/\ud800"]),
                     TEXT | JSON)
# Pre-signed URL expiries (http-v2.md §8): the World's clock stands at 2023-11-14T22:13:20Z.
VALID_EXPIRY = "2023-11-15T00:00:00"
# Expiries whose instant lies beyond what a datetime holds, once moved to UTC.
OVERFLOWING = st.sampled_from(["9999-12-31T23:59:59-01:00", "9999-12-31T23:59:59.999999-23:59",
                               "0001-01-01T00:00:00+01:00", "0001-01-01T00:00:00+23:59"])
EXPIRIES = st.sampled_from([
    "2023-11-14T22:13:21", "2023-11-14T22:13:20", "2001-01-01T00:00:00", "9999-12-31T23:59:59",
    "0001-01-01T00:00:00", "10000-01-01T00:00:00", "2023-02-30T00:00:00", "2023-11-15T24:00:00", "2023-11-15",
    "20231115T000000", "1700000000", "0", "-1", "", " ", "soon", "\uff12\uff10\uff12\uff13-11-15T00:00:00",
    "2023-11-15T00:00:00\x00", "2023-11-15T00:00:00\ud800",
]) | OVERFLOWING | TEXT
# Other spellings of VALID_EXPIRY's instant: a grant signed for VALID_EXPIRY must not verify with them.
RESPELLED = st.sampled_from(["2023-11-15T00:00:00Z", "2023-11-15T00:00:00+00:00", "2023-11-15 00:00:00",
                             "2023-11-15T00:00:00.000", "2023-11-15T00:00:00.999999",
                             "2023-11-15T02:00:00+02:00", " 2023-11-15T00:00:00", "2023-11-15T00:00"])
PATCH_OP = mostly(st.fixed_dictionaries(
    {"op": mostly(st.sampled_from(["add", "remove", "replace", "test", "copy", "move"]), JSON),
     "path": mostly(st.sampled_from(["/metadata/color", "/metadata/new", "/metadata/a/b", "/metadata", "/",
                                     ""] + [f"/metadata/{k}" for k in RESERVED]), JSON)},
    optional={"value": META_VALUES, "from": TEXT}), JSON)

# What each parameter usually looks like, with a chance of anything at all.
FIELD_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "queue_name": NAMES, "pool_name": NAMES, "flavor_name": NAMES, "flavor": NAMES,
    "message_id": IDS, "claim_id": IDS, "subscription_id": IDS, "marker": IDS | TEXT | UNSTORABLE,
    "name": mostly(st.sampled_from(["fiz", "", "."]) | TEXT, UNSTORABLE),
    "limit": mostly(SMALL, NUMBERS | JSON), "pop": mostly(SMALL, NUMBERS | JSON), "ttl": TTL, "grace": TTL,
    "weight": mostly(SMALL, NUMBERS | JSON), "echo": BOOL, "include_claimed": BOOL, "include_delayed": BOOL,
    "detailed": BOOL, "confirmed": BOOL, "force": BOOL, "with_count": BOOL,
    "messages": mostly(st.lists(MESSAGE, min_size=1, max_size=3), JSON),
    "message_ids": mostly(st.lists(IDS, min_size=1, max_size=4), JSON),
    "claim_ids": mostly(st.lists(IDS, min_size=1, max_size=2), JSON),
    "resource_types": mostly(st.lists(st.sampled_from(["messages", "subscriptions", "x"]), max_size=2), JSON),
    "subscriber": SUBSCRIBERS, "options": OPTIONS, "metadata": METADATA, "capabilities": JSON,
    "uri": mostly(st.sampled_from(["sqlite:///:memory:", "redis://127.0.0.1:1/0", "bogus://x"]), TEXT | JSON),
    "pool_list": mostly(st.lists(NAMES, max_size=2), JSON),
    "subscription": mostly(st.fixed_dictionaries({}, optional={"subscriber": SUBSCRIBERS, "ttl": TTL,
                                                              "options": OPTIONS}), JSON),
    "patch": mostly(st.lists(PATCH_OP, max_size=3), JSON),
    "paths": mostly(st.lists(st.sampled_from(["messages", "claims", "subscriptions", "notallowed"]),
                             max_size=3), JSON),
    "methods": mostly(st.lists(st.sampled_from(["GET", "POST", "DELETE", "PATCH"]), max_size=3), JSON),
    "expires": mostly(st.just(VALID_EXPIRY) | EXPIRIES, JSON),
}


def fields(names: tuple[str, ...], required: tuple[str, ...] = ()) -> st.SearchStrategy[dict[str, Any]]:
    """A dict of the named parameters, each present or not (the required ones mostly present)."""
    return st.fixed_dictionaries(
        {name: FIELD_VALUES.get(name, JSON) for name in required},
        optional={name: FIELD_VALUES.get(name, JSON) for name in names if name not in required})


ODD_BODIES = st.sampled_from([
    b'{"ttl": 1e400}', b'{"ttl": 1' + b"0" * 400 + b"}", b"[" * 5000, b"{" * 3000, b'{"messages": NaN}',
    b'{"a": Infinity}', b"\xef\xbb\xbf{}", b'{"messages": [{"body": "\\ud800"}]}', b'"fail"', b"123",
    b'{"ttl": 300, "ttl": "x"}', b"\x00", b'{"messages": [{"body": 1, "ttl": 300.5}]}',
    b'{"messages": [{"body": 1e400}]}', b'{"messages": [{"body": -1e999, "ttl": 60}]}',
    b'[{"op": "add", "path": "/metadata/x", "value": 1e400}]', b'{"x": 1e400}',
])


_NUMBER = re.compile(rb"([:\[,] )-?[0-9]+(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?")


@st.composite
def mangled(draw: st.DrawFn, document: Any) -> bytes:
    """``document`` as JSON, usually intact, else cut short, broken UTF-8, or replaced by odd bytes."""
    encoded = json.dumps(document).encode()
    kind = draw(CHOICE[9])
    if kind < 5:
        return encoded
    if kind == 5:  # numbers JSON can spell but no int64 or double holds
        huge = draw(st.sampled_from([b"1e400", b"-1e400", b"1" + b"0" * 30, b"1.5e308", b"-0.0", b"1E-400"]))
        return _NUMBER.sub(lambda m: m.group(1) + huge, encoded, count=draw(st.integers(1, 3)))
    if kind == 6:
        return encoded[: draw(st.integers(0, len(encoded)))]
    if kind == 7:
        cut = draw(st.integers(0, len(encoded)))
        return encoded[:cut] + b"\xff\xfe\xc3" + encoded[cut:]
    if kind == 8:
        return draw(ODD_BODIES)
    return draw(st.binary(max_size=60))


# -- pre-signed URLs (http-v2.md §8) --------------------------------------------------------------------
GRANT_METHODS = st.lists(st.sampled_from(["GET", "POST", "DELETE", "PATCH", "PUT", "HEAD"]), max_size=3)
GRANT_PATHS = st.lists(st.sampled_from(["messages", "claims", "subscriptions"]), max_size=2)
SIGNINGS = ["exact"] * 6 + ["respelled", "narrower", "garbage"]


@st.composite
def grants(draw: st.DrawFn, method: str, path: str, *, http: bool) -> dict[str, Any]:
    """What a pre-signed request carries before it is signed: mostly a grant for ``method`` on ``path``.

    ``signing`` says how ``signed_headers`` signs it: ``exact`` with the World's key over exactly the
    values sent (a genuine grant); ``respelled`` over VALID_EXPIRY while another spelling of that
    instant is sent; ``narrower`` over one method and one path only; ``garbage`` not at all.
    """
    paths = [f"/v2/queues/{QUEUE}/{p}" for p in draw(GRANT_PATHS)]
    if draw(CHOICE[9]) < 8:
        paths.insert(0, path)
    methods = draw(GRANT_METHODS)
    if draw(CHOICE[9]) < 8:
        methods.insert(0, method)
    odd_projects = [OTHER, None, "", "a\x00"] + ([] if http else ["\ud800", 7])
    project = draw(mostly(st.just(PROJECT), st.sampled_from(odd_projects)))
    signing = draw(st.sampled_from(SIGNINGS))
    if signing == "respelled":
        expires = draw(RESPELLED)
    else:
        expiries = EXPIRIES.filter(_encodable) if http else EXPIRIES  # a header cannot carry a surrogate
        expires = draw(st.sampled_from([st.just(VALID_EXPIRY), OVERFLOWING, expiries]).flatmap(lambda e: e))
    garbage = draw(st.sampled_from(["", "0" * 64, "é" * 64]) | (HEADER_TEXT if http else TEXT | JSON))
    return {"paths": paths, "methods": methods, "project": project, "expires": expires, "signing": signing,
            "garbage": garbage}


def _encodable(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _sign(paths: list[str], methods: list[str], project: Any, expires: str) -> str | None:
    try:
        return signature(SECRET, paths, methods, project, expires)
    except (TypeError, ValueError):  # e.g. a surrogate, which no UTF-8 HMAC input can hold
        return None


def signed_headers(fill: Any, grant: dict[str, Any], *, http: bool) -> tuple[dict[str, Any], bool]:
    """The URL-* and X-Project-ID headers of ``grant`` (ids filled in), and whether it is forged.

    Forged: not signed with the World's key over exactly the values the server receives. A forged
    grant must never let a request through, whatever its values mean (http-v2.md §8.3).
    """
    paths, methods = fill(grant["paths"]), grant["methods"]
    project, expires = grant["project"], grant["expires"]
    # NOTE: what the server receives: HTTP drops the blanks around a header's value.
    received = [v.strip(" \t") if http and isinstance(v, str) else v for v in (project, expires)]
    genuine = _sign(paths, methods, *received) if isinstance(expires, str) else None
    signing = grant["signing"]
    if signing == "exact":
        made: Any = genuine
    elif signing == "respelled":
        made = _sign(paths, methods, project, VALID_EXPIRY)
    elif signing == "narrower":
        made = _sign(paths[:1], methods[:1], project, expires)
    else:
        made = grant["garbage"]
    if made is None:
        made = "0" * 64
    headers: dict[str, Any] = {
        "URL-Signature": made, "URL-Expires": expires,
        "URL-Methods": ",".join(methods) if http else methods,
        "URL-Paths": ",".join(paths) if http else paths,
    }
    if project is not None:
        headers["X-Project-ID"] = project
    return headers, made != genuine


# -- HTTP ---------------------------------------------------------------------------------------------
OPERATIONS = sorted((template, method, action) for template, methods in routes.ROUTES.items()
                    for method, action in methods.items())
# The data plane gets most of the traffic: posts, claims and queue writes take the most input.
BUSY = ("message_post", "claim_create", "claim_update", "queue_create", "queue_update", "subscription_create",
        "message_delete_many", "message_list", "queue_list", "queue_share")
WEIGHTED_OPERATIONS = OPERATIONS + [op for op in OPERATIONS if op[2] in BUSY] * 4
QUERY_JUNK = st.sampled_from(["", "1.5", "TRUE", "junk", "-1", "99999999999999999999999", ",", "a,,b"]) | TEXT
HEADER_TEXT = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=40)
HEADERS = {
    "Client-ID": st.sampled_from([uuid.UUID(CLIENT_ID).hex, "", "not-a-uuid", "x" * 37]) | HEADER_TEXT,
    "X-Project-ID": st.sampled_from([OTHER, "", "p" * 257]) | HEADER_TEXT,
    "Content-Type": st.sampled_from([routes.PATCH_MEDIA_TYPE, "application/x-www-form-urlencoded",
                                     "text/plain"]) | HEADER_TEXT,
    "Accept": st.sampled_from(["*/*", "application/xml", "text/html"]) | HEADER_TEXT,
    "X-Roles": st.sampled_from(["admin", "", "x,admin"]),
}


def _query_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    return str(value)


def _http_query(draw: st.DrawFn, spec: routes.HttpSpec) -> str:
    query = []
    for name, (_, target) in spec.query.items():
        if draw(CHOICE[2]) == 0:
            query.append((name, draw(mostly(FIELD_VALUES.get(target, TEXT).map(_query_text), QUERY_JUNK))))
    if spec.filters or draw(CHOICE[9]) == 9:
        query += draw(st.lists(st.tuples(TEXT, QUERY_JUNK), max_size=2))
    # NOTE: a surrogate goes out as the UTF-8 bytes it would have (the server decodes them as it can).
    return urlencode(query, errors="surrogatepass")


def _http_body(draw: st.DrawFn, spec: routes.HttpSpec) -> bytes | None:
    body = None
    if spec.body_param is not None:
        body = draw(mangled(draw(FIELD_VALUES.get(spec.body_param, JSON))))
    elif spec.body_fields:
        body = draw(mangled(draw(mostly(fields(spec.body_fields), JSON))))
    if draw(CHOICE[9]) == 9:
        body = None if body is not None else draw(mangled(draw(JSON)))
    return body


def _http_headers(draw: st.DrawFn, spec: routes.HttpSpec) -> dict[str, str]:
    headers = {"Client-ID": CLIENT_ID, "X-Project-ID": PROJECT, "X-Roles": "admin",
               "Content-Type": spec.media_type or "application/json"}
    for name, values in HEADERS.items():  # mostly right, so that most requests reach the handlers
        choice = draw(CHOICE[19])
        if choice == 19:
            headers.pop(name, None)
        elif choice >= 17:
            headers[name] = draw(values)
    return headers


@st.composite
def http_requests(draw: st.DrawFn) -> dict[str, Any]:
    """Method, path, query string, headers and body of one request, mostly aimed at a real operation."""
    template, method, action = draw(st.sampled_from(WEIGHTED_OPERATIONS))
    if draw(CHOICE[9]) == 9:
        method = draw(st.sampled_from(["GET", "PUT", "POST", "PATCH", "DELETE", "HEAD", "OPTIONS", "TRACE"]))
    if draw(CHOICE[19]) == 19:
        template = "/v2/" + quote(draw(TEXT))
    if action == "message_list" and draw(st.booleans()):
        action = "message_get_many"
    spec = routes.SPECS.get(action, routes.DEFAULT_SPEC)
    path = template
    while "{" in path:
        start, end = path.index("{"), path.index("}")
        value = str(draw(FIELD_VALUES[path[start + 1:end]]))
        path = path[:start] + quote(value, safe="", errors="surrogatepass") + path[end + 1:]
    grant = draw(grants(method, path, http=True)) if draw(CHOICE[4]) == 4 else None
    return {"method": method, "path": path, "query": _http_query(draw, spec),
            "headers": _http_headers(draw, spec), "body": _http_body(draw, spec), "grant": grant}


# What the HTTP server itself answers above 500, for requests it cannot read at all (http11.py).
SERVER_REFUSALS = frozenset({501, 505})
# Error titles of limits-and-errors.md §5.1 (falcon's "4xx ..." defaults included, as §5.1 allows).
API_TITLES = frozenset({
    "Invalid API request", "Invalid request body", "Invalid queue identification",
    "Invalid topic identification", "Missing header value", "Wrong UUID value",
    "Length of client id must be at least 10 and no greater than 36.", "Project-Id Missing",
    "Empty project header not allowed", "Invalid Content-Type", "Invalid parameter",
    "Empty extra spec not allowed", "Unable to delete", "Unable to update subscription",
    "Unable to confirm subscription", "Unable to create pool", "Unable to create", "updatefail",
    "Not authorized", "Not found", "404 Not Found", "405 Method Not Allowed", "406 Not Acceptable",
    "Resource conflict", "415 Unsupported Media Type", "Internal server error",
    "Service temporarily unavailable",
})
# TODO(#8): titles outside §5.1 that only the built-in server gives, for requests it cannot read
# (http11.py, server.py) or with a method falcon does not know (§0.3 would give 405).
SERVER_TITLES = frozenset({"Malformed request", "Request header fields too large", "Not implemented",
                           "HTTP version not supported", "Request timeout", "Bad request"})
# The 503 text of a storage outage (limits-and-errors.md §5.3); the World's stores are up.
OUTAGE = "Please try again in a few seconds."


def check_http_answer(method: str, status: int, content_type: str, content: bytes,
                      allowed: frozenset[int] = frozenset(), titles: frozenset[str] = API_TITLES) -> None:
    """Never a server error nor an outage; errors in the documented shape and titles; bodies valid JSON."""
    assert status < 500 or status in allowed, (status, content[:500])
    if method == "HEAD" or status in (204, 304) or not content:
        assert status < 400 or method == "HEAD", (status, "an error without a body")
        return
    assert "json" in content_type, content_type
    document = strict_json(content)
    if status >= 400:
        assert isinstance(document, dict), document
        assert document.get("title") in titles, document
        assert set(document) <= {"title", "description", "link"}, document
        assert isinstance(document.get("description", ""), str), document
        assert OUTAGE not in document.get("description", ""), ("an outage while the store is up", document)


def _no_constant(name: str) -> Any:
    raise AssertionError(f"{name} is not JSON: no client can read this answer")


def strict_json(content: bytes | str) -> Any:
    """Parse as a strict JSON client would: NaN and Infinity are not JSON."""
    return json.loads(content, parse_constant=_no_constant)


# -- websocket ---------------------------------------------------------------------------------------
# Tokens as a websocket envelope can carry them: odd ones (non-Latin-1, CR/LF) made Keystone
# validation answer 500 once (review 8 #4).
TOKENS = mostly(HEADER_TEXT, TEXT)
WS_HEADERS = mostly(
    st.fixed_dictionaries({
        "Client-ID": mostly(st.just(CLIENT_ID), HEADERS["Client-ID"] | UNSTORABLE | JSON),
        "X-Project-ID": mostly(st.just(PROJECT), HEADERS["X-Project-ID"] | UNSTORABLE | JSON)},
        optional={"X-Auth-Token": TOKENS}).flatmap(
        lambda h: mostly(st.just({**h, "X-Roles": "admin"}), st.just(h))),
    JSON)


# "authenticate" (no auth configured: a constant answer) last, as hypothesis favours the first.
WS_ACTIONS = sorted(schemas.ACTIONS - {"authenticate"}, key=lambda a: (not a.startswith("message"), a)) + [
    "authenticate"]


# The method a pre-signed envelope needs granted, per action (websocket.md §10).
WS_SIGNED_METHODS = {"message_list": "GET", "message_get": "GET", "message_get_many": "GET",
                     "message_post": "POST", "message_delete": "DELETE", "message_delete_many": "DELETE"}
GRANT = "<grant>"  # an envelope header replaced by a grant's signed headers when the frame is encoded


@st.composite
def envelopes(draw: st.DrawFn) -> Any:
    """A decoded frame: usually an envelope for a real action with fitting fields, sometimes anything."""
    if draw(CHOICE[19]) == 19:
        return draw(JSON)
    action = draw(mostly(st.sampled_from(WS_ACTIONS), TEXT | JSON))
    required, optional = schemas._BODIES.get(action, ((), ())) if isinstance(action, str) else ((), ())
    body = draw(mostly(fields(required + optional + ("include_delayed",), required), JSON))
    document = {"action": action, "headers": draw(WS_HEADERS), "body": body}
    for key in ("headers", "body"):
        if draw(CHOICE[19]) == 19:
            del document[key]
    headers = document.get("headers")
    if isinstance(headers, dict) and draw(CHOICE[4]) == 4:
        queue = body.get("queue_name") if isinstance(body, dict) else None
        method = WS_SIGNED_METHODS.get(action, "GET") if isinstance(action, str) else "GET"
        headers[GRANT] = draw(grants(method, f"/v2/queues/{queue}/messages", http=False))
    return document


@st.composite
def signed_envelopes(draw: st.DrawFn) -> tuple[Any, bool, str, int]:
    """A frame (as ``frames`` draws them) for a message action that carries a grant and no token."""
    action = draw(st.sampled_from(sorted(WS_SIGNED_METHODS)))
    required, optional = schemas._BODIES.get(action, ((), ()))
    body = draw(fields(required + optional, required))
    path = f"/v2/queues/{body.get('queue_name')}/messages"
    headers = {"Client-ID": CLIENT_ID, GRANT: draw(grants(WS_SIGNED_METHODS[action], path, http=False))}
    return {"action": action, "headers": headers, "body": body}, draw(st.booleans()), "envelope", 0


def _with_grant(fill: Any, document: Any) -> tuple[Any, bool]:
    """``document`` with its ids filled in and any grant signed; whether that grant is forged."""
    document = fill(document)
    headers = document.get("headers") if isinstance(document, dict) else None
    if not isinstance(headers, dict) or GRANT not in headers:
        return document, False
    headers = dict(headers)
    signed, forged = signed_headers(lambda value: value, headers.pop(GRANT), http=False)
    return {**document, "headers": {**headers, **signed}}, forged


def forged_grant(fill: Any, frame: tuple[Any, bool, str, int]) -> bool:
    """Whether the frame's envelope carries a forged grant (one that must not let it through)."""
    return frame[2] != "bytes" and _with_grant(fill, frame[0])[1]


MSGPACK_EXTRAS = st.sampled_from([b"\x00\xff", msgpack.ExtType(5, b"x"), {1: "int key"}, {b"k": 1},
                                  {"queue_name": b"fizbit"}, [b"x"], -(2**64) + 1])
"""What only MessagePack can carry: bin and ext values, non-string keys (JSON drops or spells them)."""


@st.composite
def frames(draw: st.DrawFn) -> tuple[Any, bool, str, int]:
    """One websocket message before encoding: (document or bytes, binary, how to mangle it, where to cut).

    Encoded by ``encode_frame`` once the seed's ids are filled in.
    """
    binary = draw(st.booleans())
    kind = ["envelope"] * 7 + ["truncated", "bytes", "extras"]
    kind = kind[draw(CHOICE[9])]
    if kind == "bytes":
        return draw(st.binary(max_size=80)), binary, kind, 0
    document = draw(envelopes())
    if kind == "extras" and isinstance(document, dict):
        document[draw(st.sampled_from(["body", "headers", "action"]))] = draw(MSGPACK_EXTRAS)
    return document, binary, kind, draw(st.integers(0, 2000))


def encode_frame(fill: Any, frame: tuple[Any, bool, str, int]) -> bytes:
    """The message's bytes: the document (ids filled in) as MessagePack or JSON, cut if asked."""
    document, binary, kind, cut = frame
    if kind == "bytes":
        return bytes(document)
    document = _with_grant(fill, document)[0]
    if binary:
        try:
            data = msgpack.packb(document, use_bin_type=True)
        except (OverflowError, ValueError, TypeError):
            data = msgpack.packb(str(document))
    else:
        data = json.dumps(document, default=repr, skipkeys=True).encode()
    return data[:cut] if kind == "truncated" else data


def decode_reply(data: bytes, binary: bool) -> Any:
    return msgpack.unpackb(data, raw=False) if binary else strict_json(data)


def check_ws_reply(reply: Any) -> int:
    """The reply envelope is well formed, never a 500, and errors use a documented shape; its status."""
    assert isinstance(reply, dict) and set(reply) == {"request", "headers", "body"}, reply
    status = reply["headers"].get("status")
    assert reply["headers"] == {"status": status} and isinstance(status, int), reply
    assert status < 500, reply
    action = reply["request"].get("action") if isinstance(reply["request"], dict) else None
    if status >= 400 and (str(action), status) not in WS_ERROR_BODIES_EXEMPT:
        body = reply["body"]
        assert isinstance(body, dict) and set(body) in ({"error"}, {"exception", "error"}), reply
        assert isinstance(body["error"], str) or (body["error"] is None and "exception" in body), reply
        assert isinstance(body.get("exception", ""), str), reply
        assert OUTAGE not in body.get("exception", ""), ("an outage while the store is up", reply)
    return status


# -- raw bytes on sockets -------------------------------------------------------------------------------
RAW_METHODS = st.sampled_from([b"GET", b"POST", b"PUT", b"DELETE", b"PATCH", b"OPTIONS"]) | st.text(
    alphabet=string.ascii_letters + "-!", min_size=1, max_size=6,
).filter(lambda m: m != "HEAD").map(str.encode)
RAW_TARGETS = st.sampled_from([
    b"/v2/queues/fizbit/messages", b"/v2/queues", b"/", b"/v2/", b"*", b"/v2/queues/fizbit/claims",
    b"http://h/v2/queues", b"/v2/queues/%ff",
]) | st.binary(min_size=1, max_size=30).filter(lambda t: b" " not in t and b"\r" not in t and b"\n" not in t)
RAW_VERSIONS = st.sampled_from([b"HTTP/1.1", b"HTTP/1.1", b"HTTP/1.0", b"HTTP/2.0", b"http/1.1",
                                b"HTTP/1.1x"])
RAW_FIELDS = st.sampled_from([
    b"Host: t", b"Client-ID: " + CLIENT_ID.encode(), b"X-Project-ID: fuzz", b"Content-Type: application/json",
    b"Content-Length: 5", b"Content-Length: 0", b"Content-Length: -1",
    b"Content-Length: 99999999999999999999",
    b"Content-Length: 5, 6", b"Content-Length: 1\r\nContent-Length: 2", b"Transfer-Encoding: chunked",
    b"Transfer-Encoding: gzip, chunked", b"Expect: 100-continue", b"Connection: close",
    b"Connection: keep-alive", b" folded", b"NoColon", b"Bad Name: x", b"X: \x00", b"X-Project_ID: spoof",
]) | st.binary(max_size=30).filter(lambda b: b"\r\n" not in b)
CHUNKED = st.lists(st.binary(max_size=20), max_size=3).map(
    lambda parts: b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n") | st.sampled_from(
    [b"zz\r\nx\r\n", b"5\r\nab\r\n", b"ffffffffffffffffff\r\n", b"1;ext=1\r\nx\r\n0\r\n\r\n"])


@st.composite
def raw_requests(draw: st.DrawFn) -> bytes:
    """One HTTP request as bytes, from well formed to garbage."""
    if draw(CHOICE[9]) == 0:
        return draw(st.binary(max_size=120))
    line = b" ".join((draw(RAW_METHODS), draw(RAW_TARGETS), draw(RAW_VERSIONS)))
    lines = draw(st.lists(RAW_FIELDS, max_size=6))
    body = draw(CHUNKED if any(b"chunked" in f for f in lines) else JSON.flatmap(mangled))
    return line + b"\r\n" + b"".join(f + b"\r\n" for f in lines) + b"\r\n" + body
