"""Contract: the management store (pools, flavors, queue catalog) on every control driver.

sqlite always runs; sqlalchemy (PostgreSQL) and sqlalchemy-mysql (MySQL or MariaDB)
run against the real servers named by ZAQAR_TEST_SQL_URL / ZAQAR_TEST_MYSQL_URL
(tests/backends.py), each test in a schema or database of its own.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, TypeVar

import pytest
import sqlalchemy as sa

from tests import backends
from tests.conftest import FakeClock
from tests.proxy import ToggleProxy
from zaqar import storage
from zaqar.storage import errors
from zaqar.storage.control import ControlDriver, Flavor, Pool

T = TypeVar("T")

U1, U2, U3 = "redis://10.0.0.1:6379", "redis://10.0.0.2:6379", "redis://10.0.0.3:6379"
THREADS = 8


@contextmanager
def _sqlite(tmp: Path) -> Iterator[str]:
    yield f"sqlite:///{tmp / 'control.sqlite'}"


DRIVERS: dict[str, Callable[[Path], AbstractContextManager[str]]] = {
    "sqlite": _sqlite,
    "sqlalchemy": lambda tmp: backends.sql_uri(),
    "sqlalchemy-mysql": lambda tmp: backends.mysql_uri(),
}

UNREACHABLE = ["postgresql://postgres@127.0.0.1:1/x", "mysql+pymysql://root@127.0.0.1:1/x"]


@pytest.fixture(params=sorted(DRIVERS))
def control_uri(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    with DRIVERS[request.param](tmp_path) as uri:
        yield request.param.partition("-")[0], uri


@pytest.fixture
def control(control_uri: tuple[str, str]) -> Iterator[ControlDriver]:
    driver = storage.load_control_driver(*control_uri)
    yield driver
    driver.close()


def _run_together(workers: list[Callable[[], T]]) -> list[T]:
    """Start every worker at the same moment on its own thread; return their results in order."""
    barrier = threading.Barrier(len(workers))

    def start(worker: Callable[[], T]) -> T:
        barrier.wait(timeout=30)
        return worker()

    with ThreadPoolExecutor(max_workers=len(workers)) as pool:
        return [future.result(timeout=120) for future in [pool.submit(start, w) for w in workers]]


def _pool_names(control: ControlDriver, **kwargs: Any) -> list[str]:
    return [pool.name for pool in control.pools.list(**kwargs)]


def _flavor_of(control: ControlDriver, *pools: str) -> list[str | None]:
    return [control.pools.get(name).flavor for name in pools]


def _three_pools(control: ControlDriver) -> None:
    for name, uri in (("a", U1), ("b", U2), ("c", U3)):
        control.pools.create(name, uri, 1)


# ---- pools -----------------------------------------------------------------------------------


def test_pool_create_then_get_returns_every_field(control: ControlDriver) -> None:
    control.pools.create("a", U1 + "?dbid=2", 2**32 - 1, flavor="f", options={"k": [1, "x"], "n": None})
    assert control.pools.get("a") == Pool("a", U1 + "?dbid=2", 2**32 - 1, "f", {"k": [1, "x"], "n": None})


def test_pool_create_overwrites_every_field(control: ControlDriver) -> None:
    control.pools.create("a", U1, 5, flavor="f", options={"k": 1})
    control.pools.create("a", U2, 7)
    assert control.pools.get("a") == Pool("a", U2, 7, None, {})
    assert control.pools.all() == [Pool("a", U2, 7, None, {})]


def test_pool_get_unknown_raises(control: ControlDriver) -> None:
    with pytest.raises(errors.PoolDoesNotExist):
        control.pools.get("nope")


def test_pool_names_are_case_sensitive(control: ControlDriver) -> None:
    control.pools.create("a", U1, 1)
    control.pools.create("A", U2, 2)
    assert [(p.name, p.uri) for p in control.pools.all()] == [("A", U2), ("a", U1)]


def test_pool_list_pages_by_name_strictly_after_marker(control: ControlDriver) -> None:
    for i, name in enumerate(["c", "a", "e", "b", "d"]):
        control.pools.create(name, f"{U1}?dbid={i}", i)
    assert _pool_names(control, limit=2) == ["a", "b"]
    assert _pool_names(control, marker="b", limit=2) == ["c", "d"]
    assert _pool_names(control, marker="d", limit=2) == ["e"]
    assert _pool_names(control, marker="e", limit=2) == []
    assert _pool_names(control, marker="bb") == ["c", "d", "e"]
    assert control.pools.list(marker="d") == [Pool("e", f"{U1}?dbid=2", 2, None, {})]


def test_pool_list_default_limit_is_ten_and_all_returns_everything(control: ControlDriver) -> None:
    names = [f"pool-{i:02}" for i in range(12)]
    for name in reversed(names):
        control.pools.create(name, f"{U1}?n={name}", 1)
    assert _pool_names(control) == names[:10]
    assert [pool.name for pool in control.pools.all()] == names


UPDATES: list[tuple[dict[str, Any], Pool]] = [
    ({}, Pool("a", U1, 1, "f", {"o": 1})),
    ({"uri": U2}, Pool("a", U2, 1, "f", {"o": 1})),
    ({"weight": 9}, Pool("a", U1, 9, "f", {"o": 1})),
    ({"weight": 0}, Pool("a", U1, 0, "f", {"o": 1})),
    ({"flavor": "g"}, Pool("a", U1, 1, "g", {"o": 1})),
    ({"flavor": None}, Pool("a", U1, 1, None, {"o": 1})),
    ({"options": {"x": [2]}}, Pool("a", U1, 1, "f", {"x": [2]})),
    ({"options": {}}, Pool("a", U1, 1, "f", {})),
    ({"uri": U3, "weight": 3, "flavor": "h", "options": {}}, Pool("a", U3, 3, "h", {})),
]


@pytest.mark.parametrize(("change", "expected"), UPDATES, ids=[str(c) for c, _ in UPDATES])
def test_pool_update_changes_only_the_given_fields(
    control: ControlDriver, change: dict[str, Any], expected: Pool
) -> None:
    control.pools.create("a", U1, 1, flavor="f", options={"o": 1})
    assert control.pools.update("a", **change) == expected
    assert control.pools.get("a") == expected


def test_pool_update_unknown_raises(control: ControlDriver) -> None:
    with pytest.raises(errors.PoolDoesNotExist):
        control.pools.update("nope", weight=1)
    assert control.pools.all() == []


def test_pool_create_refuses_another_pools_uri(control: ControlDriver) -> None:
    control.pools.create("a", U1, 1)
    with pytest.raises(errors.PoolUriInUse):
        control.pools.create("b", U1, 2)
    assert control.pools.all() == [Pool("a", U1, 1)]
    control.pools.create("a", U1, 3)  # its own uri is no conflict
    assert control.pools.get("a").weight == 3


def test_pool_update_refuses_another_pools_uri(control: ControlDriver) -> None:
    control.pools.create("a", U1, 1)
    control.pools.create("b", U2, 2)
    with pytest.raises(errors.PoolUriInUse):
        control.pools.update("b", uri=U1, weight=5)
    assert control.pools.get("b") == Pool("b", U2, 2)
    assert control.pools.update("a", uri=U1, weight=4) == Pool("a", U1, 4)


def test_racing_creates_give_one_uri_to_one_pool(control: ControlDriver) -> None:
    def create(i: int) -> str:
        try:
            control.pools.create(f"p{i}", U1, i)
        except errors.PoolUriInUse:
            return "refused"
        return "created"

    outcomes = _run_together([lambda i=i: create(i) for i in range(THREADS)])
    assert sorted(outcomes) == ["created"] + ["refused"] * (THREADS - 1)
    assert [pool.uri for pool in control.pools.all()] == [U1]


def test_racing_creates_of_one_pool_all_succeed(control: ControlDriver) -> None:
    _run_together([lambda i=i: control.pools.create("a", f"{U1}?n={i}", i) for i in range(THREADS)])
    [pool] = control.pools.all()
    assert pool == Pool("a", f"{U1}?n={pool.weight}", pool.weight)


def test_only_identical_uri_strings_clash(control: ControlDriver) -> None:
    uris = [U1, U1 + "?dbid=1", U1 + "?dbid=2", U1 + "?dbid=1&socket_timeout=0.5", U1.upper(), U1 + "/"]
    for i, uri in enumerate(uris):
        control.pools.create(f"p{i}", uri, 1)
    assert [pool.uri for pool in control.pools.all()] == uris


def test_a_uri_given_up_can_be_taken(control: ControlDriver) -> None:
    control.pools.create("a", U1, 1)
    control.pools.update("a", uri=U2)
    control.pools.create("b", U1, 1)
    control.pools.delete("a")
    control.pools.create("c", U2, 1)
    assert [(p.name, p.uri) for p in control.pools.all()] == [("b", U1), ("c", U2)]


def test_pool_delete_removes_only_that_pool(control: ControlDriver) -> None:
    _three_pools(control)
    control.pools.delete("b")
    control.pools.delete("nope")  # unknown: not an error
    assert _pool_names(control) == ["a", "c"]
    with pytest.raises(errors.PoolDoesNotExist):
        control.pools.get("b")


def test_pool_delete_refused_while_its_flavor_exists(control: ControlDriver) -> None:
    _three_pools(control)
    control.flavors.create("p", "gold", ["a", "b"])
    with pytest.raises(errors.PoolInUseByFlavor) as raised:
        control.pools.delete("a")
    assert raised.value.context == {"name": "a", "flavor": "gold"}
    assert _pool_names(control) == ["a", "b", "c"]
    control.flavors.delete("p", "gold")
    control.pools.delete("a")
    assert _pool_names(control) == ["b", "c"]


def test_pool_naming_a_flavor_that_does_not_exist_can_be_deleted(control: ControlDriver) -> None:
    control.pools.create("a", U1, 1, flavor="ghost")
    control.pools.delete("a")
    assert control.pools.all() == []


# ---- flavors ---------------------------------------------------------------------------------


def test_flavor_create_sets_flavor_on_its_pools(control: ControlDriver) -> None:
    _three_pools(control)
    control.flavors.create("p", "gold", ["c", "a"], capabilities={"FIFO": True, "n": [1]})
    assert control.flavors.get("p", "gold") == Flavor("gold", "p", ("a", "c"), {"FIFO": True, "n": [1]})
    assert _flavor_of(control, "a", "b", "c") == ["gold", None, "gold"]


def test_flavor_create_overwrites_and_clears_dropped_pools(control: ControlDriver) -> None:
    _three_pools(control)
    control.flavors.create("p", "gold", ["a", "b"], capabilities={"x": 1})
    control.flavors.create("p", "gold", ["c", "b"])
    assert control.flavors.get("p", "gold") == Flavor("gold", "p", ("b", "c"), {})
    assert _flavor_of(control, "a", "b", "c") == [None, "gold", "gold"]


def test_flavor_update_replaces_its_pools_and_keeps_capabilities(control: ControlDriver) -> None:
    _three_pools(control)
    control.flavors.create("p", "gold", ["a", "b"], capabilities={"x": 1})
    assert control.flavors.update("p", "gold", ["c"]) == Flavor("gold", "p", ("c",), {"x": 1})
    assert control.flavors.get("p", "gold") == Flavor("gold", "p", ("c",), {"x": 1})
    assert _flavor_of(control, "a", "b", "c") == [None, None, "gold"]


def test_flavor_update_unknown_raises_and_changes_no_pool(control: ControlDriver) -> None:
    _three_pools(control)
    with pytest.raises(errors.FlavorDoesNotExist):
        control.flavors.update("p", "gold", ["a"])
    assert _flavor_of(control, "a", "b", "c") == [None, None, None]


def test_pool_moves_to_the_flavor_that_lists_it_last(control: ControlDriver) -> None:
    _three_pools(control)
    control.flavors.create("p", "gold", ["a", "b"])
    control.flavors.create("p", "silver", ["b", "c"])
    assert control.flavors.get("p", "gold").pools == ("a",)
    assert control.flavors.get("p", "silver").pools == ("b", "c")


def test_flavor_pools_follow_the_pools_own_flavor_field(control: ControlDriver) -> None:
    _three_pools(control)
    control.flavors.create("p", "gold", ["a"])
    control.pools.update("b", flavor="gold")
    control.pools.update("a", flavor=None)
    control.pools.create("d", "redis://10.0.0.4", 1, flavor="gold")
    assert control.flavors.get("p", "gold").pools == ("b", "d")


@pytest.mark.parametrize("existing", [True, False], ids=["overwrite", "new"])
def test_flavor_create_with_an_unknown_pool_changes_nothing(control: ControlDriver, existing: bool) -> None:
    _three_pools(control)
    if existing:
        control.flavors.create("p", "gold", ["a"], capabilities={"x": 1})
    with pytest.raises(errors.PoolDoesNotExist) as raised:
        control.flavors.create("p", "gold", ["b", "nope", "c"], capabilities={"y": 2})
    assert raised.value.context == {"name": "nope"}
    assert _flavor_of(control, "a", "b", "c") == ["gold" if existing else None, None, None]
    if existing:
        assert control.flavors.get("p", "gold") == Flavor("gold", "p", ("a",), {"x": 1})
    else:
        assert control.flavors.list("p") == []


def test_flavor_update_with_an_unknown_pool_changes_nothing(control: ControlDriver) -> None:
    _three_pools(control)
    control.flavors.create("p", "gold", ["a"])
    with pytest.raises(errors.PoolDoesNotExist):
        control.flavors.update("p", "gold", ["b", "nope"])
    assert control.flavors.get("p", "gold").pools == ("a",)
    assert _flavor_of(control, "a", "b") == ["gold", None]


def test_flavors_are_per_project(control: ControlDriver) -> None:
    _three_pools(control)
    control.flavors.create("p1", "gold", ["a"])
    control.flavors.create(None, "none", ["b"])
    control.flavors.create("", "empty", ["c"])
    for project, name in [("p2", "gold"), (None, "gold"), ("", "gold"), ("", "none"), (None, "empty")]:
        with pytest.raises(errors.FlavorDoesNotExist):
            control.flavors.get(project, name)
    assert [f.name for f in control.flavors.list("p2")] == []
    assert control.flavors.list("p1") == [Flavor("gold", "p1", ("a",), {})]
    assert control.flavors.list(None) == [Flavor("none", None, ("b",), {})]
    assert control.flavors.list("") == [Flavor("empty", "", ("c",), {})]
    control.flavors.delete("p2", "gold")  # another project's delete touches nothing
    assert control.flavors.get("p1", "gold").pools == ("a",)


def test_flavor_list_pages_by_name_strictly_after_marker(control: ControlDriver) -> None:
    _three_pools(control)
    for name in ["c", "a", "e", "b", "d"]:
        control.flavors.create("p", name, [], capabilities={"n": name})
    control.flavors.update("p", "b", ["a", "c"])

    def names(**kwargs: Any) -> list[str]:
        return [flavor.name for flavor in control.flavors.list("p", **kwargs)]

    assert names(limit=2) == ["a", "b"]
    assert names(marker="b", limit=2) == ["c", "d"]
    assert names(marker="d", limit=2) == ["e"]
    assert names(marker="e") == []
    assert names(marker="bb") == ["c", "d", "e"]
    assert control.flavors.list("p", marker="a", limit=1) == [Flavor("b", "p", ("a", "c"), {"n": "b"})]


def test_flavor_list_default_limit_is_ten(control: ControlDriver) -> None:
    for i in range(12):
        control.flavors.create("p", f"f{i:02}", [])
    assert [f.name for f in control.flavors.list("p")] == [f"f{i:02}" for i in range(10)]


def test_flavor_delete_clears_its_pools(control: ControlDriver) -> None:
    _three_pools(control)
    control.flavors.create("p", "gold", ["a", "b"])
    control.flavors.create("p", "silver", ["c"])
    control.flavors.delete("p", "gold")
    control.flavors.delete("p", "nope")  # unknown: not an error
    with pytest.raises(errors.FlavorDoesNotExist):
        control.flavors.get("p", "gold")
    assert _flavor_of(control, "a", "b", "c") == [None, None, "silver"]
    assert [f.name for f in control.flavors.list("p")] == ["silver"]


# ---- catalog ---------------------------------------------------------------------------------


def test_catalog_insert_maps_a_queue_once(control: ControlDriver) -> None:
    assert control.catalog.insert("p", "q", "a") == "a"
    assert control.catalog.insert("p", "q", "b") == "a"
    assert control.catalog.get("p", "q") == "a"


def test_catalog_get_of_an_unmapped_queue_raises(control: ControlDriver) -> None:
    control.catalog.insert("p", "q", "a")
    control.catalog.insert(None, "r", "b")
    for project, queue in [("p", "other"), ("p2", "q"), (None, "q"), ("", "q"), ("", "r"), ("P", "q")]:
        with pytest.raises(errors.QueueNotMapped):
            control.catalog.get(project, queue)
    assert control.catalog.get(None, "r") == "b"


def test_catalog_maps_queues_per_project(control: ControlDriver) -> None:
    assert control.catalog.insert("p", "q", "a") == "a"
    assert control.catalog.insert(None, "q", "b") == "b"
    assert control.catalog.insert("", "q", "c") == "c"
    assert [control.catalog.get(p, "q") for p in ("p", None, "")] == ["a", "b", "c"]


def test_catalog_concurrent_inserts_agree_on_one_pool(control: ControlDriver) -> None:
    for round_ in range(5):
        queue = f"q{round_}"
        workers = [lambda i=i, q=queue: control.catalog.insert("p", q, f"pool{i}") for i in range(THREADS)]
        results = _run_together(workers)
        assert len(set(results)) == 1, results
        assert control.catalog.get("p", queue) == results[0]


def test_catalog_delete_forgets_only_that_queue(control: ControlDriver) -> None:
    control.catalog.insert("p", "q", "a")
    control.catalog.insert("p", "r", "a")
    control.catalog.insert("p2", "q", "a")
    control.catalog.delete("p", "q")
    control.catalog.delete("p", "nope")  # unmapped: not an error
    with pytest.raises(errors.QueueNotMapped):
        control.catalog.get("p", "q")
    assert control.catalog.list("p") == [("r", "a")]
    assert control.catalog.get("p2", "q") == "a"
    assert control.catalog.insert("p", "q", "b") == "b"


def test_catalog_list_pages_per_project_by_queue_name(control: ControlDriver) -> None:
    for name, pool in [("c", "x"), ("a", "y"), ("e", "x"), ("b", "x"), ("d", "y")]:
        control.catalog.insert("p", name, pool)
    control.catalog.insert("p2", "aa", "x")
    control.catalog.insert(None, "ab", "x")
    assert control.catalog.list("p", limit=2) == [("a", "y"), ("b", "x")]
    assert control.catalog.list("p", marker="b", limit=2) == [("c", "x"), ("d", "y")]
    assert control.catalog.list("p", marker="d") == [("e", "x")]
    assert control.catalog.list("p", marker="e") == []
    assert control.catalog.list("p", marker="bb") == [("c", "x"), ("d", "y"), ("e", "x")]
    assert control.catalog.list("p2") == [("aa", "x")]
    assert control.catalog.list(None) == [("ab", "x")]
    assert control.catalog.list("") == []


def test_catalog_list_default_limit_is_ten(control: ControlDriver) -> None:
    for i in range(12):
        control.catalog.insert("p", f"q{i:02}", "a")
    assert [queue for queue, _ in control.catalog.list("p")] == [f"q{i:02}" for i in range(10)]


def test_catalog_count_is_per_pool_across_projects(control: ControlDriver) -> None:
    for project, queue, pool in [("p", "q", "a"), ("p2", "q", "a"), (None, "r", "a"), ("p", "s", "b")]:
        control.catalog.insert(project, queue, pool)
    assert [control.catalog.count(pool) for pool in ("a", "b", "c")] == [3, 1, 0]


def test_catalog_forget_pool_removes_exactly_that_pools_queues(control: ControlDriver) -> None:
    for project, queue, pool in [("p", "q", "a"), ("p2", "q", "a"), (None, "r", "a"), ("p", "s", "b")]:
        control.catalog.insert(project, queue, pool)
    assert control.catalog.forget_pool("a") == 3
    assert control.catalog.forget_pool("a") == 0
    assert control.catalog.count("a") == 0
    assert control.catalog.list("p") == [("s", "b")]
    assert control.catalog.list("p2") == []
    assert control.catalog.insert("p", "q", "c") == "c"


def test_catalog_placed_names_every_queue_of_a_pool_with_its_project(control: ControlDriver) -> None:
    for project, queue, pool in [("p", "q", "a"), ("", "q", "a"), (None, "r", "a"), ("p", "s", "b")]:
        control.catalog.insert(project, queue, pool)
    assert sorted(control.catalog.placed("a"), key=repr) == sorted([("p", "q"), ("", "q"), (None, "r")],
                                                                   key=repr)
    assert control.catalog.placed("b") == [("p", "s")]
    assert control.catalog.placed("nowhere") == []


# ---- the driver ------------------------------------------------------------------------------


def test_data_survives_reopening(control_uri: tuple[str, str]) -> None:
    first = storage.load_control_driver(*control_uri)
    first.pools.create("a", U1, 1, options={"k": "v"})
    first.flavors.create("p", "gold", ["a"], capabilities={"FIFO": True})
    first.catalog.insert("p", "q", "a")
    first.close()
    second = storage.load_control_driver(*control_uri)
    try:
        assert second.is_alive()
        assert second.pools.all() == [Pool("a", U1, 1, "gold", {"k": "v"})]
        assert second.flavors.get("p", "gold") == Flavor("gold", "p", ("a",), {"FIFO": True})
        assert second.catalog.get("p", "q") == "a"
    finally:
        second.close()


def test_message_store_and_management_store_can_share_one_database(
    control_uri: tuple[str, str], clock: FakeClock
) -> None:
    name, uri = control_uri
    for _ in range(2):  # the second round reopens a database holding both schemas
        data = storage.load_data_driver(name, uri, clock=clock)
        control = storage.load_control_driver(name, uri)
        try:
            data.queues.create("p", "q", {})
            assert control.catalog.insert("p", "q", "a") == "a"
            assert [q.name for q in data.queues.list("p")] == ["q"]
            assert data.is_alive() and control.is_alive()
        finally:
            control.close()
            data.close()


def test_one_instance_serves_many_threads(control: ControlDriver) -> None:
    def work(i: int) -> Flavor:
        control.pools.create(f"pool{i}", f"{U1}?n={i}", i)
        control.flavors.create("p", f"f{i}", [f"pool{i}"])
        control.catalog.insert("p", f"q{i}", f"pool{i}")
        return control.flavors.get("p", f"f{i}")

    flavors = _run_together([lambda i=i: work(i) for i in range(THREADS)])
    assert [f.pools for f in flavors] == [(f"pool{i}",) for i in range(THREADS)]
    assert len(control.pools.all()) == THREADS
    assert sum(control.catalog.count(f"pool{i}") for i in range(THREADS)) == THREADS


def test_use_after_close_raises_backend_unavailable(control_uri: tuple[str, str]) -> None:
    control = storage.load_control_driver(*control_uri)
    control.pools.create("a", U1, 1)
    control.close()
    with pytest.raises(errors.BackendUnavailable):
        control.pools.all()
    assert control.is_alive() is False


CALLS: list[tuple[str, Callable[[ControlDriver], object]]] = [
    ("pools.create", lambda c: c.pools.create("a", U1, 1)),
    ("pools.get", lambda c: c.pools.get("a")),
    ("pools.list", lambda c: c.pools.list()),
    ("pools.all", lambda c: c.pools.all()),
    ("pools.update", lambda c: c.pools.update("a", weight=2)),
    ("pools.delete", lambda c: c.pools.delete("a")),
    ("flavors.create", lambda c: c.flavors.create("p", "f", ["a"])),
    ("flavors.get", lambda c: c.flavors.get("p", "f")),
    ("flavors.list", lambda c: c.flavors.list("p")),
    ("flavors.update", lambda c: c.flavors.update("p", "f", ["a"])),
    ("flavors.delete", lambda c: c.flavors.delete("p", "f")),
    ("catalog.get", lambda c: c.catalog.get("p", "q")),
    ("catalog.insert", lambda c: c.catalog.insert("p", "q", "a")),
    ("catalog.delete", lambda c: c.catalog.delete("p", "q")),
    ("catalog.list", lambda c: c.catalog.list("p")),
    ("catalog.count", lambda c: c.catalog.count("a")),
    ("catalog.forget_pool", lambda c: c.catalog.forget_pool("a")),
]


@pytest.mark.parametrize("uri", UNREACHABLE, ids=["postgresql", "mysql"])
def test_an_unreachable_server_means_backend_unavailable_on_every_call(uri: str) -> None:
    control = storage.load_control_driver("sqlalchemy", uri)  # starts anyway
    try:
        assert control.is_alive() is False
        for name, call in CALLS:
            try:
                call(control)
            except errors.BackendUnavailable:
                continue
            except Exception as exc:
                pytest.fail(f"{name} raised {type(exc).__name__}: {exc}")
            pytest.fail(f"{name} returned although the server is unreachable")
    finally:
        control.close()


SERVERS = {"postgresql": backends.sql_uri, "mysql": backends.mysql_uri}


@pytest.mark.parametrize("server", sorted(SERVERS))
def test_starts_before_its_server_and_serves_once_it_answers(server: str) -> None:
    with SERVERS[server]() as uri:
        url = sa.make_url(uri)
        proxy = ToggleProxy((url.host or "127.0.0.1", int(url.port or 0)))
        proxied = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
        control = storage.load_control_driver("sqlalchemy", proxied)
        try:
            with pytest.raises(errors.BackendUnavailable):
                control.catalog.insert("p", "q", "a")
            assert control.is_alive() is False
            proxy.up()
            assert control.catalog.insert("p", "q", "a") == "a"  # creates the tables first
            proxy.down()  # an outage after start: every connection is reset
            with pytest.raises(errors.BackendUnavailable):
                control.catalog.get("p", "q")
            proxy.up()
            assert control.catalog.get("p", "q") == "a"
            assert control.is_alive() is True
        finally:
            control.close()
            proxy.down()
