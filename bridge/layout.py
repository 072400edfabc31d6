"""The C header plugin_shim/include/livediff_shm.h, read through cffi.

This is the only place Python learns protocol constants and the shared-memory layout:
the cdef block of the header is handed to cffi as-is, so C and Python cannot drift.
"""
from __future__ import annotations

import re
from pathlib import Path

import cffi

HEADER_PATH = Path(__file__).resolve().parent.parent / "plugin_shim" / "include" / "livediff_shm.h"

_CDEF_BLOCK = re.compile(r"/\* LIVEDIFF_CDEF_BEGIN \*/(.*?)/\* LIVEDIFF_CDEF_END \*/", re.S)


def _load_ffi() -> cffi.FFI:
    match = _CDEF_BLOCK.search(HEADER_PATH.read_text())
    if match is None:
        raise RuntimeError(f"{HEADER_PATH} has no LIVEDIFF_CDEF_BEGIN/END block")
    ffi = cffi.FFI()
    ffi.cdef(match.group(1))
    return ffi


ffi = _load_ffi()
# The header declares no functions; dlopen(None) just exposes its enum members as attributes.
_constants = ffi.dlopen(None)


def const(name: str) -> int:
    """An integer constant (enum member) of the header, e.g. const("LD_MSG_HELLO")."""
    return getattr(_constants, name)


def enum_members(enum_name: str) -> dict[str, int]:
    """All members of one header enum, name -> value (e.g. enum_members("ld_msg_type"))."""
    return dict(ffi.typeof(f"enum {enum_name}").relements)


SLOT_SIZE = ffi.sizeof("ld_slot")
HEADER_SIZE = ffi.sizeof("ld_shm_header")
