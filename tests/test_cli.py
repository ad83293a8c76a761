"""The ``satellite`` command, run as a real process against two real nodes."""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from bench.cluster import (
    ROOT,
    Cluster,
    Node,
    running_cluster,
    sigint_as_from_a_terminal,
    wait_for,
)
from satellite import cli

CLI = [sys.executable, "-m", "satellite.cli"]


def env(**extra: str) -> dict[str, str]:
    # The caller's SATELLITE_NODE must not leak into a test that relies on --node.
    out = {k: v for k, v in os.environ.items() if k != cli.ENV_NODE}
    return {**out, **extra}


def satellite(*args: object, **extra_env: str) -> subprocess.CompletedProcess:
    # run() kills the child if the timeout expires, so nothing is left behind.
    return subprocess.run(
        CLI + [str(a) for a in args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env=env(**extra_env),
    )


def addr(node: Node) -> str:
    return f"127.0.0.1:{node.client_port}"


def one_error_line(result: subprocess.CompletedProcess) -> str:
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("satellite: "), lines[0]
    assert result.stdout == ""
    return lines[0]


@pytest.fixture(scope="module")
def office(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with running_cluster(tmp_path_factory.mktemp("cli"), 2, "cli") as cluster:
        yield cluster


class Watch:
    """A ``satellite watch`` process whose stdout lines are collected by a thread."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            CLI + ["watch", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            env=env(),
            preexec_fn=sigint_as_from_a_terminal,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def stop(self, sig: int = signal.SIGTERM) -> tuple[int, str]:
        """Signal it by pid and wait for it; SIGKILL if it does not end."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        self._reader.join(5)
        assert self.proc.stderr is not None
        stderr = self.proc.stderr.read()
        self.proc.stderr.close()
        return self.proc.returncode, stderr


# --- no node needed ----------------------------------------------------------------------------


def test_help_names_every_command_and_each_has_an_example() -> None:
    top = satellite("--help")
    assert top.returncode == 0
    for name in ("members", "event", "set", "state", "watch", "keygen"):
        assert name in top.stdout
        sub = satellite(name, "--help")
        assert sub.returncode == 0, sub.stderr
        assert f"satellite {name}" in sub.stdout  # its usage line and its example
        assert "examples:" in sub.stdout and "--node" in sub.stdout


def test_the_console_script_is_installed() -> None:
    script = Path(sys.executable).with_name("satellite")
    assert script.exists(), "pip install -e . creates it from setup.cfg's entry point"
    result = subprocess.run([str(script), "keygen"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and len(result.stdout.strip()) == 44


def test_keygen_prints_a_new_32_byte_key_each_time() -> None:
    first, second = satellite("keygen"), satellite("keygen")
    keys = []
    for result in (first, second):
        assert result.returncode == 0 and result.stderr == ""
        key = result.stdout.strip()
        assert len(key) == 44
        assert len(base64.b64decode(key, validate=True)) == 32
        keys.append(key)
    assert keys[0] != keys[1]
    as_json = json.loads(satellite("keygen", "--format", "json").stdout)
    assert len(base64.b64decode(as_json["key"], validate=True)) == 32


def test_an_unreachable_node_is_one_line_and_status_1() -> None:
    # A port that is bound but not listening: connections are refused, and nobody else
    # can take it while the test runs.
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        port = held.getsockname()[1]
        for args in (("members",), ("set", "lights", "on"), ("watch",)):
            result = satellite(*args, "--node", f"127.0.0.1:{port}", "--timeout", "2")
            assert result.returncode == 1, result
            assert str(port) in one_error_line(result)


def test_usage_errors_are_one_line_and_status_2() -> None:
    for args, extra in [
        (("members", "--node", "nope"), {}),
        (("state",), {cli.ENV_NODE: "nope"}),
        (("members", "--node", "127.0.0.1:99999"), {}),
        (("set", "lights"), {}),
        (("state", "--timeout", "0"), {}),
        (("state", "--format", "yaml"), {}),
        (("frobnicate",), {}),
        ((), {}),
    ]:
        result = satellite(*args, **extra)
        assert result.returncode == 2, (args, result)
        one_error_line(result)


def test_values_are_json_when_they_parse_and_strings_otherwise() -> None:
    assert cli.parse_value("42") == 42
    assert cli.parse_value("21.5") == 21.5
    assert cli.parse_value('"x"') == "x"
    assert cli.parse_value('{"a": 1}') == {"a": 1}
    assert cli.parse_value("true") is True
    assert cli.parse_value("on") == "on"
    assert cli.parse_value("NaN") == "NaN"
    assert cli.parse_value("{oops") == "{oops"
    assert cli.parse_value(None) is None


def test_helpers_render_for_humans_and_json() -> None:
    class Snapshot(dict):  # the Antenna's snapshot: a dict with attribute access
        __getattr__ = dict.get

    plain = cli.to_plain(Snapshot(a=Snapshot(b=(1, 2)), c=[Snapshot(d=b"\x01")]))
    assert plain == {"a": {"b": [1, 2]}, "c": [{"d": "01"}]}
    assert type(plain["a"]) is dict and isinstance(Snapshot(), Mapping)
    assert cli.age(1_000, now_ms=4_500) == "3s ago"
    assert cli.age(0, now_ms=7_200_000) == "2h ago"
    assert cli.age(10_000, now_ms=0) == "0s ago"
    assert cli.age(None) == "-"
    assert cli.table(("A", "LONG"), [("xyz", 1), ("b", None)]) == "A    LONG\nxyz  1\nb    -"


# --- against the two nodes ---------------------------------------------------------------------


def test_members_lists_both_nodes(office: Cluster) -> None:
    first = office.nodes[0]
    result = satellite("members", "--node", addr(first), "--format", "json")
    assert result.returncode == 0, result.stderr
    members = json.loads(result.stdout)["members"]
    assert {m["node"] for m in members} == {"cli0", "cli1"}
    assert {m["node"]: m["status"] for m in members}["cli0"] == "self"

    text = satellite("members", "--node", addr(first)).stdout.splitlines()
    assert text[0].split() == ["NODE", "ADDRESS", "STATUS"]
    assert sorted(line.split()[0] for line in text[1:]) == ["cli0", "cli1"]
    assert f"cli0  {first.peer}  self" in text


def test_set_at_one_node_shows_in_the_state_of_the_other(office: Cluster) -> None:
    first, second = office.nodes
    result = satellite("set", "lights", "on", "--node", addr(first))
    assert result.returncode == 0, result.stderr
    assert "lights" in result.stdout
    assert satellite("set", "temperature", "21.5", "--node", addr(first)).returncode == 0

    def targets() -> dict:
        state = satellite("state", "--node", addr(second), "--format", "json")
        assert state.returncode == 0, state.stderr
        return json.loads(state.stdout)["targets"]

    wait_for(lambda: targets().get("lights") == "on", 10, "lights on at the second node")
    wait_for(lambda: targets().get("temperature") == 21.5, 10, "a float, not a string")


def test_state_text_has_every_section(office: Cluster) -> None:
    second = office.nodes[1]

    def readings() -> dict:
        out = satellite("state", "--node", addr(second), "--format", "json").stdout
        return json.loads(out)["readings"]

    wait_for(lambda: {"cli0", "cli1"} <= set(readings()), 20, "both nodes' readings")
    result = satellite("state", "--node", addr(second))
    assert result.returncode == 0, result.stderr
    for section in ("Targets:", "Readings:", "Online devices:", "Average temperature:"):
        assert section in result.stdout
    assert "Members:" in result.stdout
    assert re.search(r"^  cli0  .* \d+[smhd] ago$", result.stdout, re.MULTILINE)


def test_an_event_reaches_watchers_on_the_other_node(office: Cluster) -> None:
    first, second = office.nodes
    everything = Watch("--node", addr(second))  # text, every event
    named = Watch("door", "count", "--node", addr(second), "--format", "json")
    try:
        sent = iter(range(1_000_000))

        def both_saw_a_door() -> bool:
            # The watchers subscribe as they start: publish until one event got there.
            n = next(sent)
            result = satellite(
                "event", "door", json.dumps({"who": "courier", "n": n}), "--node", addr(first)
            )
            assert result.returncode == 0, result.stderr
            assert result.stdout.strip() == "Event 'door' dispatched"
            return bool(everything.lines) and any('"door"' in line for line in named.lines)

        wait_for(both_saw_a_door, 20, "the door event at both watchers", step=0.2)
        assert satellite("event", "count", "42", "--node", addr(first)).returncode == 0
        wait_for(lambda: any('"count"' in line for line in named.lines), 10, "the count event")

        events = [json.loads(line) for line in named.lines]
        door = next(e for e in events if e["event"] == "door")
        assert door["payload"]["who"] == "courier" and door["origin"] == first.name
        assert {"event": "count", "payload": 42}.items() <= events[-1].items()
        # TIME NAME PAYLOAD, with the event's own name when caught by "*".
        pattern = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d door \{\"who\":\"courier\",\"n\":\d+\}"
        assert re.fullmatch(pattern, everything.lines[0]), everything.lines[0]
    finally:
        status_int, err_int = everything.stop(signal.SIGINT)  # Ctrl-C
        status_term, err_term = named.stop(signal.SIGTERM)
    assert (status_int, status_term) == (0, 0), (err_int, err_term)
    assert "Traceback" not in err_int + err_term
