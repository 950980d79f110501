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
fds in its processes) and by other environments (each has its own port and tree). The
inode comes from one netlink ``sock_diag`` lookup of the exact 4-tuple (``/proc/net/tcp``
as the fallback, which costs tens of milliseconds on a host with many sockets), once
per connection.
"""

from __future__ import annotations

import os
import socket
import struct
from collections.abc import Iterable

_LOOPBACK = socket.inet_aton("127.0.0.1") + bytes(12)
_SOCK_DIAG_BY_FAMILY, _NLM_F_REQUEST, _NLMSG_ERROR = 20, 1, 2


def socket_inode(peer_port: int, local_port: int) -> int | None:
    """The inode of the client socket 127.0.0.1:peer_port -> 127.0.0.1:local_port:
    one exact netlink sock_diag lookup (microseconds), else a scan of /proc/net/tcp
    (tens of milliseconds on a busy host)."""
    try:
        return _diag_inode(peer_port, local_port)
    except OSError:
        return _proc_inode(peer_port, local_port)


def _diag_inode(peer_port: int, local_port: int) -> int | None:
    """NETLINK_SOCK_DIAG, inet_diag_req_v2 for exactly this TCP 4-tuple."""
    sockid = struct.pack(
        "!HH16s16s", peer_port, local_port, _LOOPBACK, _LOOPBACK
    ) + struct.pack("=III", 0, 0xFFFFFFFF, 0xFFFFFFFF)  # interface, no cookie
    request = struct.pack("=BBBBI", socket.AF_INET, socket.IPPROTO_TCP, 0, 0, 0xFFFFFFFF)
    body = request + sockid
    header = struct.pack("=IHHII", 16 + len(body), _SOCK_DIAG_BY_FAMILY, _NLM_F_REQUEST, 1, 0)
    with socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, 4) as nl:  # NETLINK_SOCK_DIAG
        nl.settimeout(1.0)
        nl.send(header + body)
        reply = nl.recv(65536)
    length, kind = struct.unpack_from("=IH", reply)
    if kind == _NLMSG_ERROR or length < 16 + 72:
        return None  # ENOENT: no such socket
    return struct.unpack_from("=I", reply, 16 + 68)[0]  # inet_diag_msg.idiag_inode


def _proc_inode(peer_port: int, local_port: int) -> int | None:
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
