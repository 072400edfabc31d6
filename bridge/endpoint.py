"""The engine's ZeroMQ endpoint: the default rule of docs/protocol.md, local-only checks,
and the private ipc directory.

The shim computes the same default in C; both sides must agree, so the rule lives in
docs/protocol.md and here, nowhere else in Python.
"""
from __future__ import annotations

import fcntl
import os
import re
import stat
from pathlib import Path

ENV_VAR = "LIVEDIFF_ENDPOINT"
ALLOWED = "ipc://<path> or tcp://127.0.0.1:<port>"
_TCP_LOCAL = re.compile(r"^tcp://127\.0\.0\.1:(\d{1,5})$")


class EndpointError(ValueError):
    """An endpoint that is not local, or an ipc directory that is not private."""


def default_endpoint(environ: dict[str, str] | None = None) -> str:
    """$LIVEDIFF_ENDPOINT, else ipc://$XDG_RUNTIME_DIR/livediff/engine.sock,
    else ipc:///tmp/livediff-<uid>/engine.sock."""
    env = os.environ if environ is None else environ
    if env.get(ENV_VAR):
        return check_local(env[ENV_VAR])
    runtime_dir = env.get("XDG_RUNTIME_DIR")
    if runtime_dir:
        return f"ipc://{runtime_dir}/livediff/engine.sock"
    return f"ipc:///tmp/livediff-{os.getuid()}/engine.sock"


def check_local(endpoint: str) -> str:
    """Return the endpoint if it is local (ipc path or loopback tcp port); raise otherwise."""
    if endpoint.startswith("ipc://"):
        path = endpoint[len("ipc://"):]
        if not path.startswith("/"):
            raise EndpointError(f"endpoint {endpoint!r}: the ipc path must be absolute; allowed: {ALLOWED}")
        return endpoint
    match = _TCP_LOCAL.match(endpoint)
    if match and 0 < int(match.group(1)) < 65536:
        return endpoint
    raise EndpointError(f"endpoint {endpoint!r} is not local; allowed: {ALLOWED}")


def ipc_path(endpoint: str) -> Path | None:
    """The socket file of an ipc endpoint, None for tcp."""
    return Path(endpoint[len("ipc://"):]) if endpoint.startswith("ipc://") else None


def prepare(endpoint: str) -> str:
    """Check the endpoint is local and, for ipc, create its directory 0700 (or check an existing
    one is ours and private) so no other user can reach the engine."""
    check_local(endpoint)
    path = ipc_path(endpoint)
    if path is None:
        return endpoint
    directory = path.parent
    try:
        directory.mkdir(mode=0o700, parents=True)
        os.chmod(directory, 0o700)  # mkdir's mode is filtered by the umask
    except FileExistsError:
        pass
    info = directory.lstat()
    if not stat.S_ISDIR(info.st_mode):
        raise EndpointError(f"ipc directory {directory} is not a directory")
    if info.st_uid != os.getuid():
        raise EndpointError(f"ipc directory {directory} belongs to uid {info.st_uid}, not to you "
                            f"(uid {os.getuid()}); use a directory of your own")
    if info.st_mode & 0o077:
        raise EndpointError(f"ipc directory {directory} has mode {stat.S_IMODE(info.st_mode):o}; "
                            f"allowed: 700 (no group/other access)")
    return endpoint


def lock(endpoint: str) -> int | None:
    """Take the endpoint's lock (flock on `<socket>.lock` beside the ipc socket, holding the pid),
    so engines started at the same moment leave exactly one serving: the others get an
    EndpointError naming the holder. Returns the lock's descriptor, held until the process exits
    or closes it; None for tcp, where binding the port is exclusive already. Call prepare() first."""
    path = ipc_path(endpoint)
    if path is None:
        return None
    lock_path = path.with_name(path.name + ".lock")
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise EndpointError(f"another engine (pid {holder}) already serves or is starting on {endpoint} "
                            f"(lock {lock_path}); stop it or use --endpoint") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd
