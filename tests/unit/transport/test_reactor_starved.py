"""A reactor out of file descriptors rests its listener instead of spinning on accept().

The pending connection stays in the kernel's queue, so a listener re-armed at once
is ready at once: workers burned a core and logged ~100,000 warnings a second.
Run in a child process, whose descriptor limit the test lowers and uses up.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]

CHILD = r"""
import json, logging, os, resource, socket, subprocess, sys, time
from zaqar.transport.reactor import Channel, Reactor

class Echo(Channel):
    def data_received(self, data):
        self.write(data)

warnings = []
class Count(logging.Handler):
    def emit(self, record):
        if "accept failed" in record.getMessage():
            warnings.append(record)
log = logging.getLogger("zaqar.transport")
log.addHandler(Count()); log.setLevel(logging.WARNING); log.propagate = False

reactor = Reactor("t", 2)
port = reactor.listen("127.0.0.1", 0, lambda r, s, a: Echo(r, s, a)).getsockname()[1]
reactor.start()
peer = subprocess.Popen([sys.executable, "-c",
    "import socket, sys, time; sys.stdin.readline(); "
    f"s = socket.create_connection(('127.0.0.1', {port})); s.sendall(b'hi'); "
    "s.settimeout(10); print(s.recv(10).decode(), flush=True)"],
    stdin=subprocess.PIPE, stdout=subprocess.PIPE)
resource.setrlimit(resource.RLIMIT_NOFILE, (64, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
hog = []
try:
    while True:
        hog.append(os.open("/dev/null", os.O_RDONLY))
except OSError:
    pass
peer.stdin.write(b"go\n"); peer.stdin.flush()
time.sleep(0.5)
cpu, logged = time.process_time(), len(warnings)
time.sleep(2.0)
cpu, logged = time.process_time() - cpu, len(warnings) - logged
for fd in hog:
    os.close(fd)
echoed = peer.stdout.readline().decode().strip()
peer.wait(10)
reactor.stop()
print(json.dumps({"cpu": cpu, "warnings": logged, "echoed": echoed}))
"""


def test_out_of_descriptors_the_listener_rests_and_recovers() -> None:
    done = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    # NOTE: the spin shows as the warnings of each failed accept (no timing asserted); the CPU figure
    # is in the message for whoever reads a failure (it was ~1.9 s of these 2 s).
    assert seen["warnings"] <= 1, seen  # was ~250,000
    assert seen["echoed"] == "hi"  # served once descriptors were free again
