"""C and Python agree on the shared header: every field offset and size of the shm layout
and every enum value, as compiled by the C compiler (tests/c/layout_probe.c) versus parsed
by cffi (bridge/layout.py)."""
from __future__ import annotations

import re
import subprocess

from bridge.layout import HEADER_PATH, ffi

PROBE = HEADER_PATH.parents[2] / "tests" / "c" / "layout_probe.c"


def python_view() -> dict[str, int]:
    view = {"sizeof(ld_slot)": ffi.sizeof("ld_slot"), "sizeof(ld_shm_header)": ffi.sizeof("ld_shm_header")}
    for struct in ("ld_slot", "ld_shm_header"):
        for field, info in ffi.typeof(struct).fields:
            view[f"offsetof({struct}.{field})"] = ffi.offsetof(struct, field)
            view[f"sizeof({struct}.{field})"] = ffi.sizeof(info.type)
    for enum in re.findall(r"enum (\w+) \{", HEADER_PATH.read_text()):
        view.update(ffi.typeof(f"enum {enum}").relements)
    return view


def c_view(tmp_path) -> dict[str, int]:
    binary = tmp_path / "layout_probe"
    subprocess.run(["cc", "-std=c11", "-Wall", "-Wextra", "-Werror", f"-I{HEADER_PATH.parent}",
                    str(PROBE), "-o", str(binary)], check=True)
    lines = subprocess.run([str(binary)], check=True, capture_output=True, text=True).stdout.splitlines()
    return {name: int(value) for name, value in (line.rsplit(" ", 1) for line in lines)}


def test_c_and_python_agree_on_the_header(tmp_path):
    c, python = c_view(tmp_path), python_view()
    assert set(c) == set(python), f"probe out of date: only C {set(c) - set(python)}, only Python {set(python) - set(c)}"
    assert {k: v for k, v in c.items() if python[k] != v} == {}


def test_the_engine_fades_seams_over_the_length_the_shim_crossfades_the_preroll_with():
    """The engine (which never reads the header) bakes its seam fade over SEAM_SECONDS; after a
    preroll the shim adds the dry input's complementary fade over LD_SEAM_MS."""
    from bridge.layout import const
    from engine.dsp import SEAM_SECONDS
    assert SEAM_SECONDS == const("LD_SEAM_MS") / 1000


def test_the_probe_notices_a_difference(tmp_path):
    """The comparison can fail: a shifted offset shows up as a mismatch."""
    c = c_view(tmp_path)
    c["offsetof(ld_slot.window_id)"] += 4
    assert {k for k, v in c.items() if python_view()[k] != v} == {"offsetof(ld_slot.window_id)"}
