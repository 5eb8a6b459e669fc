"""Smoke test of the benchmark scripts: they run end to end and print every row.

Each script runs as a subprocess at its smallest settings (a fraction of a
second per scenario, one round), in its own process group so a hang cannot
leave servers behind. Only the exit status and the shape of the output are
checked: no figure is asserted, because timings on a shared CI machine mean
nothing (see benchmarks/README.md for how to read real runs).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

from benchmarks import transport_bench

ROOT = Path(__file__).resolve().parents[2]
NUMBER = r"(?:-?\d+(?:\.\d+)?|n/a)"


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
