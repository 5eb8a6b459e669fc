"""Smoke test of the benchmark scripts: they run end to end and print every row.

Each script runs as a subprocess at its smallest settings (a fraction of a
second per scenario, one round), in its own process group so a hang cannot
leave servers behind. Only the exit status and the shape of the output are
checked: no figure is asserted, because timings on a shared CI machine mean
nothing (see benchmarks/README.md for how to read real runs).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

from benchmarks import harness, harness_report, transport_bench
from benchmarks.common import is_local
from tests import backends

ROOT = Path(__file__).resolve().parents[2]
NUMBER = r"(?:-?\d+(?:\.\d+)?(?:-\d+(?:\.\d+)?)?|n/a)"  # or a range, min-max
TINY = ("--seconds", "0.1", "--rounds", "1", "--concurrency", "2", "--latency-seconds", "0.2",
        "--connections", "10")


def _run(module: str, *args: str, timeout: float) -> str:
    proc = subprocess.Popen([sys.executable, "-m", module, *args], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        os.killpg(proc.pid, signal.SIGTERM)  # the script and the servers it started
        try:
            out, err = proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
        raise AssertionError(f"{module} {' '.join(args)} did not finish in {timeout} s:\n{out}\n{err}") \
            from exc
    assert proc.returncode == 0, f"{module} exited {proc.returncode}:\n{out}\n{err}"
    return out


def _rows(out: str, names: str, columns: int) -> dict[tuple[str, str], list[str]]:
    """Table rows ``<name> <label> <columns numbers>`` (an optional note after them)."""
    row = re.compile(rf"^({names})\s+(\S+)((?:\s+{NUMBER}){{{columns}}})(?:\s+\S.*)?$")
    found: dict[tuple[str, str], list[str]] = {}
    for line in out.splitlines():
        m = row.match(line)
        if m:
            found[m[1], m[2]] = m[3].split()
    return found


def test_transport_bench_runs_every_target():
    out = _run("benchmarks.transport_bench", "--seconds", "0.3", "--rounds", "1", "--concurrency", "2",
               timeout=90)
    rows = _rows(out, "|".join(transport_bench.SCENARIOS), 9)
    targets = transport_bench.TRANSPORTS + transport_bench.CEILINGS
    assert set(rows) == {(s, t) for s in transport_bench.SCENARIOS for t in targets}, out
    for scenario in transport_bench.SCENARIOS:
        for transport in transport_bench.TRANSPORTS:
            assert re.search(rf"^  {scenario}\s+{transport}\s+CPU/msg ", out, re.M), out  # zaqar / ceiling


def test_pool_bench_runs_every_scenario_over_http():
    out = _run("benchmarks.pool_bench", "--seconds", "0.3", "--rounds", "1", "--threads", "2",
               "--queues", "4", "--no-in-process", timeout=90)
    rows = _rows(out, "single|pooled-1|pooled-2|pooled-3", 11)
    assert {name for name, _ in rows} == {"single", "pooled-1", "pooled-2", "pooled-3"}, out


def _harness_table(out: str, only: tuple[str, ...],
                   ceilings: bool = True) -> dict[tuple[str, str], list[str]]:
    """The harness's rows for a run of ``only``: exactly the expected ones, each a full row of figures."""
    rows = _rows(out, "|".join(harness.SCENARIOS), 10)
    assert list(rows) == harness.expected_rows(only, ceilings), out
    for (scenario, target), cells in rows.items():
        assert cells[-1] == "0", f"{scenario}/{target} had error replies:\n{out}"
    return rows


def _targets(out: str) -> dict[str, str]:
    found = dict(re.findall(r"^  (.+?)\s+\S+ <= \S+\s+(pass|FAIL|n/a)$", out, re.M))
    assert set(found) == {g.label for g in harness_report.goals(10)}, out
    return found


def test_harness_runs_every_scenario(tmp_path):
    report = tmp_path / "harness.json"
    out = _run("benchmarks.harness", "--store", "sqlite", *TINY, "--json", str(report), timeout=120)
    rows = _harness_table(out, harness.SCENARIOS)
    assert all(cells[7] == "n/a" for cells in rows.values()), out  # no store process beside sqlite
    assert "n/a" not in _targets(out).values(), out  # every target measured
    assert re.search(r"^idle 10 websocket connections: server RSS \d", out, re.M), out
    stored = json.loads(report.read_text())["stores"]
    assert [s["store"] for s in stored] == ["sqlite"]
    assert [(r["scenario"], r["target"]) for r in stored[0]["rows"]] == list(rows)
    assert all(len(r["rounds"]) == 1 for r in stored[0]["rows"])


def test_harness_on_redis_reports_its_cpu_and_cleans_up():
    url = backends._base(backends.REDIS_ENV)
    only = ("post1", "latency")
    out = _run("benchmarks.harness", "--store", "redis", "--redis-url", url, "--only", ",".join(only),
               "--no-ceilings", *TINY, timeout=90)
    rows = _harness_table(out, only, ceilings=False)
    if is_local(url):
        assert all(cells[7] != "n/a" for cells in rows.values()), out  # redis-server's CPU column
    assert re.search(r"^cleanup: redis: deleted \d+ keys under .*, 0 left$", out, re.M), out


def test_commit_cost_prints_every_figure_and_leaves_no_file(tmp_path):
    out = _run("benchmarks.commit_cost", "--dir", str(tmp_path), "--posts", "20", "--wakeups", "20",
               "--rounds", "1", timeout=60)
    figures = re.findall(rf"^(post, synchronous=full|post, synchronous=normal|fsync per post|thread wakeup)"
                         rf".*?\s{NUMBER} \({NUMBER}\)$", out, re.MULTILINE)
    assert len(figures) == 4, out
    assert len(re.findall(r"^  k=\d: fsync saved", out, re.MULTILINE)) == 4, out
    assert list(tmp_path.iterdir()) == []  # its store files went with it
