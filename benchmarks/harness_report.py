"""The harness's table and its targets block: medians over interleaved rounds, computed pass/fail.

Why medians of per-round figures (not pooled sums): a round is a few seconds in
which every target of a scenario ran once; one noisy round (another process
taking a core) then moves one of three values, not the result. The per-round
spread of server CPU per message is printed next to its median, so a reader
sees how far to trust it. Ratios between targets are taken round by round
(the same minutes of noise) and their median reported.
"""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Callable, Sequence
from typing import Any

from benchmarks import notify_bench, transport_bench
from benchmarks.common import fmt

SAMPLE_FIELDS = ("msg_per_s", "p50_ms", "p99_ms", "tx_per_msg", "rx_per_msg", "server_ms", "store_ms",
                 "gen_pct")


@dataclasses.dataclass
class Sample:
    """One run of one scenario on one target; ``None``: not measured there."""

    msg_per_s: float
    p50_ms: float | None
    p99_ms: float | None
    tx_per_msg: float | None
    rx_per_msg: float | None
    server_ms: float | None
    store_ms: float | None
    gen_pct: float | None
    errors: int
    note: str = ""  # the first error, a drained queue
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)


def from_throughput(r: transport_bench.Result) -> Sample:
    note = r.first_error or ("queue drained" if r.drained else "")
    return Sample(r.msg_per_s, r.p50_ms, r.p99_ms, r.tx_per_msg, r.rx_per_msg, r.server_ms_per_msg,
                  r.store_ms_per_msg, r.gen_cpu_pct, r.errors, note, {"thread_messages": r.thread_messages})


def from_latency(r: notify_bench.Result, seconds: float) -> Sample:
    """A latency run: msgs/s is the rate delivered; lost messages count as errors."""
    errors = r.post_errors + r.receive_errors + r.lost
    note = r.first_error or (f"{r.lost} lost" if r.lost else "")
    return Sample(r.delivered / seconds, r.p50_ms, r.p99_ms, None, None, r.server_cpu_ms_per_msg,
                  r.store_cpu_ms_per_msg, r.gen_cpu_pct, errors, note, {"gets": r.gets, "max_ms": r.max_ms})


def failed(exc: Exception) -> Sample:
    """A run that raised: one error, no figures (msgs/s 0: nothing was measured to have moved)."""
    return Sample(0.0, None, None, None, None, None, None, None, 1, f"run failed: {exc!r}"[:300])


@dataclasses.dataclass
class Row:
    """A scenario on a target over the rounds (samples in round order)."""

    scenario: str
    target: str
    samples: list[Sample] = dataclasses.field(default_factory=list)

    def values(self, name: str) -> list[float | None]:
        return [getattr(s, name) for s in self.samples]

    def median(self, name: str) -> float | None:
        known = [v for v in self.values(name) if v is not None]
        return statistics.median(known) if known else None

    def spread(self, name: str) -> str:
        known = [v for v in self.values(name) if v is not None]
        return f"{min(known):.3f}-{max(known):.3f}" if known else "n/a"

    @property
    def errors(self) -> int:
        return sum(s.errors for s in self.samples)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"scenario": self.scenario, "target": self.target, "errors": self.errors}
        out.update({f"median_{name}": self.median(name) for name in SAMPLE_FIELDS})
        out["rounds"] = [dataclasses.asdict(s) for s in self.samples]
        return out


def round_ratio(a: Row | None, b: Row | None, value: Callable[[Sample], float | None]) -> float | None:
    """Median over the rounds of ``value`` of round i of ``a`` / of round i of ``b``."""
    if a is None or b is None:
        return None
    ratios = [x / y for x, y in ((value(sa), value(sb)) for sa, sb in zip(a.samples, b.samples, strict=False))
              if x is not None and y]
    return statistics.median(ratios) if ratios else None


def _wire(s: Sample) -> float | None:
    return None if s.tx_per_msg is None or s.rx_per_msg is None else s.tx_per_msg + s.rx_per_msg


# ----------------------------------------------------------------------------------------------------------
# The table.

HEADER = (f"{'scenario':<8} {'target':<23} {'msgs/s':>7} {'p50 ms':>7} {'p99 ms':>7} {'tx B/msg':>8} "
          f"{'rx B/msg':>8} {'srv ms/msg':>10} {'srv min-max':>11} {'store ms/msg':>12} {'gen CPU%':>8} "
          f"{'errors':>6}")


HEADER_NOTE = ("srv: zaqar-server CPU from /proc (min-max over the rounds); store: redis-server CPU; "
               "gen: this load generator's CPU, % of one core; stats and list count a request as a message, "
               "mixed counts posts + deletes")


def print_table(rows: Sequence[Row], out: Callable[[str], None] = print) -> None:
    out(HEADER)
    out("-" * len(HEADER))
    for r in rows:
        out(f"{r.scenario:<8} {r.target:<23} {fmt(r.median('msg_per_s'), '.0f'):>7} "
            f"{fmt(r.median('p50_ms'), '.2f'):>7} {fmt(r.median('p99_ms'), '.2f'):>7} "
            f"{fmt(r.median('tx_per_msg'), '.0f'):>8} {fmt(r.median('rx_per_msg'), '.0f'):>8} "
            f"{fmt(r.median('server_ms'), '.3f'):>10} {r.spread('server_ms'):>11} "
            f"{fmt(r.median('store_ms'), '.3f'):>12} {fmt(r.median('gen_pct'), '.0f'):>8} {r.errors:>6}")
    for r in rows:
        notes = sorted({s.note for s in r.samples if s.note})
        if notes:
            out(f"  {r.scenario}/{r.target}: {'; '.join(notes)}")


def print_ceiling_ratios(rows: Sequence[Row], out: Callable[[str], None] = print) -> None:
    """zaqar / bare framework, per scenario and transport: how much of the cost is zaqar's own."""
    by = {(r.scenario, r.target): r for r in rows}
    pairs = [(r, by[r.scenario, transport_bench.CEILING + r.target]) for r in rows
             if (r.scenario, transport_bench.CEILING + r.target) in by]
    if not pairs:
        return
    out("")
    out("zaqar / ceiling, median of per-round ratios: server CPU per message | msgs/s")
    for zq, ceiling in pairs:
        cpu = round_ratio(zq, ceiling, lambda s: s.server_ms)
        rate = round_ratio(zq, ceiling, lambda s: s.msg_per_s)
        out(f"  {zq.scenario:<8} {zq.target:<15} CPU/msg {fmt(cpu, '.2f'):>6}x | "
            f"msgs/s {fmt(rate, '.2f'):>5}x")


def print_deflate_ratios(rows: Sequence[Row], out: Callable[[str], None] = print) -> None:
    """What permessage-deflate costs and saves: each ``*-deflate`` target against its plain twin.

    Ratios are per round (the two ran seconds apart, under the same noise), so
    the server CPU ratio is the one to trust for deflate's cost per message.
    """
    by = {(r.scenario, r.target): r for r in rows}
    pairs = [(r, by[r.scenario, r.target.removesuffix(transport_bench.DEFLATE)]) for r in rows
             if r.target.endswith(transport_bench.DEFLATE)
             and (r.scenario, r.target.removesuffix(transport_bench.DEFLATE)) in by]
    if not pairs:
        return
    out("")
    out("permessage-deflate / plain, median of per-round ratios: server CPU per message (and the difference "
        "of the medians) | wire bytes per message | msgs/s")
    for deflated, plain in pairs:
        cpu = round_ratio(deflated, plain, lambda s: s.server_ms)
        a, b = deflated.median("server_ms"), plain.median("server_ms")
        extra = "n/a" if a is None or b is None else f"{(a - b) * 1000:+.0f} us"
        wire = round_ratio(deflated, plain, _wire)
        rate = round_ratio(deflated, plain, lambda s: s.msg_per_s)
        out(f"  {deflated.scenario:<8} {deflated.target:<19} CPU/msg {fmt(cpu, '.2f'):>6}x {extra:>8} | "
            f"bytes {fmt(wire, '.2f'):>5}x | msgs/s {fmt(rate, '.2f'):>5}x")


# ----------------------------------------------------------------------------------------------------------
# The targets of issue #9.


@dataclasses.dataclass(frozen=True)
class Goal:
    label: str
    limit: float
    unit: str  # "ms" or "x" (a ratio) or "MB"
    measure: Callable[[dict[tuple[str, str], Row], dict[str, Any] | None], float | None]


def _median(scenario: str, target: str, name: str) -> Callable[..., float | None]:
    def measure(by: dict[tuple[str, str], Row], idle: dict[str, Any] | None) -> float | None:
        row = by.get((scenario, target))
        return None if row is None else row.median(name)

    return measure


def _ratio(scenario: str, a: str, b: str,
           value: Callable[[Sample], float | None]) -> Callable[..., float | None]:
    def measure(by: dict[tuple[str, str], Row], idle: dict[str, Any] | None) -> float | None:
        return round_ratio(by.get((scenario, a)), by.get((scenario, b)), value)

    return measure


def _idle_rss_mb(by: dict[tuple[str, str], Row], idle: dict[str, Any] | None) -> float | None:
    if idle is None:
        return None
    return (idle["rss_kb"]["open"] - idle["rss_kb"]["before"]) / 1024


def goals(connections: int) -> list[Goal]:
    """Issue #9's targets; the idle-connection limit scales with ``connections`` (50 MB per 1,000)."""
    srv = "server CPU ms/msg"
    return [
        Goal(f"post1 http-keepalive: {srv}", 0.5, "ms", _median("post1", "http-keepalive", "server_ms")),
        Goal(f"post1 ws-json: {srv}", 0.4, "ms", _median("post1", "ws-json", "server_ms")),
        Goal(f"post1 ws-msgpack: {srv}", 0.4, "ms", _median("post1", "ws-msgpack", "server_ms")),
        Goal(f"consume http-keepalive: {srv}", 0.3, "ms", _median("consume", "http-keepalive", "server_ms")),
        Goal(f"consume ws-json: {srv}", 0.3, "ms", _median("consume", "ws-json", "server_ms")),
        Goal(f"consume ws-msgpack: {srv}", 0.3, "ms", _median("consume", "ws-msgpack", "server_ms")),
        Goal("post1 ws-json / http-newconn: server CPU/msg", 0.5, "x",
             _ratio("post1", "ws-json", "http-newconn", lambda s: s.server_ms)),
        Goal("post1 ws-msgpack / http-newconn: server CPU/msg", 0.5, "x",
             _ratio("post1", "ws-msgpack", "http-newconn", lambda s: s.server_ms)),
        Goal("post1 ws-msgpack / http-keepalive: bytes/msg", 0.6, "x",
             _ratio("post1", "ws-msgpack", "http-keepalive", _wire)),
        Goal("post1 ws-msgpack-deflate / http-keepalive: bytes/msg", 0.6, "x",
             _ratio("post1", "ws-msgpack-deflate", "http-keepalive", _wire)),
        Goal("latency ws-json-push at 100 msgs/s: p99 ms", 10.0, "ms",
             _median("latency", "ws-json-push", "p99_ms")),
        Goal("latency ws-msgpack-push at 100 msgs/s: p99 ms", 10.0, "ms",
             _median("latency", "ws-msgpack-push", "p99_ms")),
        Goal(f"{connections} idle websocket connections: server RSS growth MB", 50.0 * connections / 1000,
             "MB", _idle_rss_mb),
    ]


def evaluate(rows: Sequence[Row], idle: dict[str, Any] | None, connections: int) -> list[dict[str, Any]]:
    """Every goal with its measured value and ``pass``, ``FAIL`` or ``n/a`` (not measured in this run)."""
    by = {(r.scenario, r.target): r for r in rows}
    out = []
    for goal in goals(connections):
        value = goal.measure(by, idle)
        verdict = "n/a" if value is None else ("pass" if value <= goal.limit else "FAIL")
        out.append({"target": goal.label, "value": value, "limit": goal.limit, "unit": goal.unit,
                    "result": verdict})
    return out


def print_targets(results: Sequence[dict[str, Any]], rounds: int, out: Callable[[str], None] = print) -> None:
    out("")
    out(f"targets (issue #9; medians of {rounds} interleaved round{'s' if rounds > 1 else ''}):")
    for t in results:
        spec = ".2f" if t["unit"] in ("x", "MB") else ".3f"
        value = fmt(t["value"], spec) + (t["unit"] if t["unit"] == "x" and t["value"] is not None else "")
        limit = f"{t['limit']:{spec}}{t['unit'] if t['unit'] == 'x' else ''}"
        out(f"  {t['target']:<58} {value:>8} <= {limit:<7} {t['result']}")
