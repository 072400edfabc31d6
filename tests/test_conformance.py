"""The plugin in the tools plugin developers trust: Steinberg's VST3 validator in its extensive
mode (0 failures) and pluginval at strictness 10, each with an engine running and without one;
clap-info on the CLAP build. The tools are not part of the project: .ci/run points
$LIVEDIFF_VST3_VALIDATOR, $LIVEDIFF_PLUGINVAL and $LIVEDIFF_CLAP_INFO at ../shared/conformance/bin
when it exists; without them these tests skip and say why."""
from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from bridge.protocol import PARAM
from tests.host.build import built_plugin


def tool(variable: str) -> str:
    path = os.environ.get(variable)
    if not path:
        pytest.skip(f"${variable} is not set (.ci/run sets it when ../shared/conformance/bin exists)")
    assert os.access(path, os.X_OK), f"${variable}={path} is not an executable"
    return path


@pytest.fixture(params=["no engine", "engine running"])
def endpoint(request, private_endpoint):
    """The plugin's endpoint, with or without an engine answering on it."""
    if request.param == "engine running":
        request.getfixturevalue("engine")
    return private_endpoint


def test_vst3_validator_extensive_passes(endpoint):
    result = subprocess.run([tool("LIVEDIFF_VST3_VALIDATOR"), "-e", str(built_plugin()["VST3"])],
                            capture_output=True, text=True, timeout=600)
    out = result.stdout + result.stderr
    summary = re.search(r"Result: (\d+) tests passed, (\d+) tests failed", out)
    assert summary and int(summary.group(2)) == 0 and result.returncode == 0, out[-4000:]
    assert int(summary.group(1)) >= 500
    for warning in ("No bypass parameter found", "Not all points have been read", "silenceFlags not set",
                    "IProcessContextRequirements"):
        assert warning not in out, f"validator says: {warning}"


def test_pluginval_strictness_10_passes(endpoint):
    result = subprocess.run([tool("LIVEDIFF_PLUGINVAL"), "--strictness-level", "10", "--skip-gui-tests",
                             "--validate", str(built_plugin()["VST3"])], capture_output=True, text=True, timeout=900)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-4000:]
    assert "Completed tests in pluginval / Fuzz parameters" in out and "FAILED" not in out


def test_clap_info_sees_the_ports_and_parameters(private_endpoint):
    result = subprocess.run([tool("LIVEDIFF_CLAP_INFO"), str(built_plugin()["CLAP"])],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    text = result.stdout
    params = json.loads(text[text.index("{"):])["plugins"][0]["extensions"]["clap.params"]["param-info"]
    assert [p["name"] for p in params] == sorted(PARAM, key=PARAM.get)
    assert [p["name"] for p in params if "bypass" in p["flags"]] == ["bypass"]
