"""Which process is behind a loopback connection: the Runtime API's credential."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

from lambdaflow.testing.peer import peer_is_in_tree, process_tree, socket_inode


def test_connections_are_traced_to_their_process_tree():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4)
    port = server.getsockname()[1]
    # a grandchild connects: it is in the child's tree, not in a stranger's
    code = (
        "import socket, subprocess, sys, time\n"
        "subprocess.run([sys.executable, '-c', "
        f"'import socket, time; s = socket.create_connection((\"127.0.0.1\", {port})); "
        "time.sleep(5)'])\n"
    )
    child = subprocess.Popen([sys.executable, "-c", code])
    try:
        conn, peer = server.accept()
        assert socket_inode(peer[1], port)
        assert peer_is_in_tree(peer[1], port, child.pid)
        mine = socket.create_connection(("127.0.0.1", port))
        conn2, peer2 = server.accept()
        assert not peer_is_in_tree(peer2[1], port, child.pid)  # this process's socket
        assert peer_is_in_tree(peer2[1], port, os.getpid())
        assert child.pid in process_tree(child.pid) and len(process_tree(child.pid)) == 2
        mine.close()
        conn.close()
        conn2.close()
    finally:
        child.kill()
        child.wait()
        server.close()
    assert socket_inode(65000, 1) is None
