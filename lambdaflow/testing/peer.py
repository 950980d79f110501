"""Which process is on the other end of a loopback TCP connection (Linux ``/proc``).

The Runtime API must answer only its own execution environment. awslambdaric knows
nothing but ``AWS_LAMBDA_RUNTIME_API=host:port``: its C++ client puts that string into
a URL and its Python client into ``http.client.HTTPConnection(host:port)``, so a
secret cannot travel in the address (a path breaks the Python client, a user name
the C++ one). The kernel knows who owns each socket, so the emulator asks it instead:

    accepted connection: peer 127.0.0.1:P -> our port Q
      /proc/net/tcp: the socket with local port P, remote port Q -> inode I
      /proc/<pid>/fd/*: is "socket:[I]" open in the environment's process tree?

That is the environment's credential: unforgeable by other users (they cannot open
fds in its processes) and by other environments (each has its own port and tree). It
costs one read of /proc/net/tcp per *connection*; awslambdaric keeps its connection
alive for the environment's life.
"""

from __future__ import annotations

import os
from collections.abc import Iterable


def socket_inode(peer_port: int, local_port: int) -> int | None:
    """The inode of the client socket 127.0.0.1:peer_port -> 127.0.0.1:local_port."""
    want_local = f":{peer_port:04X}"
    want_remote = f":{local_port:04X}"
    try:
        with open("/proc/net/tcp", encoding="ascii") as fh:
            next(fh, None)
            for line in fh:
                fields = line.split()
                if (
                    len(fields) > 9
                    and fields[1].endswith(want_local)
                    and fields[2].endswith(want_remote)
                ):
                    return int(fields[9])
    except OSError:
        return None
    return None


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (from /proc/<pid>/task/*/children)."""
    out, todo = [], [pid]
    while todo:
        current = todo.pop()
        out.append(current)
        try:
            tasks = os.listdir(f"/proc/{current}/task")
        except OSError:
            continue
        for tid in tasks:
            try:
                with open(f"/proc/{current}/task/{tid}/children", encoding="ascii") as fh:
                    todo.extend(int(c) for c in fh.read().split())
            except OSError:
                continue
    return out


def owns_socket(pids: Iterable[int], inode: int) -> bool:
    target = f"socket:[{inode}]"
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") == target:
                    return True
            except OSError:
                continue
    return False


def peer_is_in_tree(peer_port: int, local_port: int, root_pid: int) -> bool:
    """True if the connection from ``peer_port`` to ``local_port`` was opened by
    ``root_pid`` or one of its descendants."""
    inode = socket_inode(peer_port, local_port)
    return inode is not None and inode != 0 and owns_socket(process_tree(root_pid), inode)
