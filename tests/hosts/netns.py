"""Several hosts on one machine: each a Linux network namespace with its own address on a
bridge the harness creates (and removes), so that a process reaches another only at that
host's address, as across machines. Files are shared as a shared volume would share them
(one directory, the same path on every host); the network is not.

Root only (`ip netns`). Every name the harness makes carries one random tag, and `remove()`
kills every process in the namespaces and deletes the namespaces, the links and the bridge,
whatever state the test left them in.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], check=check, capture_output=True, text=True)


def free_subnet() -> str:
    """A 10.x.y.0/24 no interface of this machine is on (the first three parts)."""
    used = _ip("-4", "-o", "addr").stdout
    while True:
        prefix = f"10.{random.randint(100, 250)}.{random.randint(0, 255)}"
        if f" {prefix}." not in used:
            return prefix


@dataclass
class Host:
    network: Network
    name: str
    namespace: str
    address: str
    processes: list[subprocess.Popen] = field(default_factory=list)

    def run(self, argv: list[str], *, env: dict, log: Path, user: str | None = None, cwd=None) -> subprocess.Popen:
        """Start `argv` on this host, its output to `log`."""
        as_user = ["/usr/sbin/runuser", "-u", user, "--"] if user else []
        with open(log, "ab") as out:
            process = subprocess.Popen(
                ["ip", "netns", "exec", self.namespace, *as_user, *argv],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=cwd,
                start_new_session=True,
            )
        self.processes.append(process)
        return process

    def call(self, argv: list[str], *, env: dict, timeout: float = 120) -> subprocess.CompletedProcess:
        """Run `argv` on this host to its end."""
        return subprocess.run(
            ["ip", "netns", "exec", self.namespace, *argv], env=env, capture_output=True, text=True, timeout=timeout
        )

    def pids(self) -> list[int]:
        listed = _ip("netns", "pids", self.namespace, check=False).stdout.split()
        return [int(pid) for pid in listed if pid.isdigit()]

    def lose(self) -> None:
        """The host is gone: every process on it killed at once (SIGKILL), no goodbye."""
        for _ in range(50):
            pids = self.pids()
            if not pids:
                break
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.1)
        for process in self.processes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=10)
        self.processes.clear()


@dataclass
class Network:
    """A bridge with this machine on .1 and a host per namespace on .2 and up."""

    prefix: str = field(default_factory=free_subnet)
    tag: str = field(default_factory=lambda: f"{random.randrange(16**4):04x}")
    hosts: dict[str, Host] = field(default_factory=dict)

    @property
    def bridge(self) -> str:
        return f"sh{self.tag}b"

    def create(self) -> Network:
        _ip("link", "add", self.bridge, "type", "bridge")
        _ip("addr", "add", f"{self.prefix}.1/24", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")
        return self

    def add(self, name: str) -> Host:
        index = len(self.hosts) + 2
        namespace, outside, inside = f"sh{self.tag}-{name}", f"sh{self.tag}v{index}", f"sh{self.tag}p{index}"
        _ip("netns", "add", namespace)
        _ip("link", "add", outside, "type", "veth", "peer", "name", inside)
        _ip("link", "set", inside, "netns", namespace)
        _ip("link", "set", outside, "master", self.bridge, "up")
        address = f"{self.prefix}.{index}"
        _ip("-n", namespace, "addr", "add", f"{address}/24", "dev", inside)
        _ip("-n", namespace, "link", "set", inside, "up")
        _ip("-n", namespace, "link", "set", "lo", "up")
        host = Host(self, name, namespace, address)
        self.hosts[name] = host
        return host

    def remove(self) -> None:
        for index, host in enumerate(self.hosts.values(), start=2):
            host.lose()
            _ip("link", "del", f"sh{self.tag}v{index}", check=False)  # and its peer inside
            _ip("netns", "del", host.namespace, check=False)
        _ip("link", "del", self.bridge, check=False)

    def leftovers(self) -> list[str]:
        """Anything of this network still on the machine (nothing, after remove(); the kernel
        takes a moment to drop a namespace's links)."""
        for _ in range(50):
            links = [line for line in _ip("-o", "link").stdout.splitlines() if f"sh{self.tag}" in line]
            spaces = [line for line in _ip("netns", "list").stdout.splitlines() if f"sh{self.tag}-" in line]
            if not links + spaces:
                break
            time.sleep(0.1)
        return links + spaces


def wait_for(predicate, *, timeout_s: float, what: str, every_s: float = 0.5, logs: list[Path] = ()):
    """Poll `predicate` until it returns something true; fail naming `what` with the logs' tails."""
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
        except Exception as exc:  # a host on its way up refuses connections
            last = exc
        if last and not isinstance(last, Exception):
            return last
        time.sleep(every_s)
    tails = "\n".join(f"--- {log.name}\n{log.read_text(errors='replace')[-2500:]}" for log in logs if log.exists())
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what} (last: {last!r})\n{tails}")
