"""The deployment files and the README stay true: deploy/node.toml is a valid config with
an example of every setting, deploy/satellite.service is a sane unit, every Python
example of the README compiles, and the README carries CI's test command word for word."""

from __future__ import annotations

import base64
import configparser
import re
import shlex
import tomllib
from pathlib import Path

import run_node

ROOT = Path(__file__).resolve().parent.parent
NODE_TOML = ROOT / "deploy" / "node.toml"
UNIT = ROOT / "deploy" / "satellite.service"
README = ROOT / "README.md"
KEY_PATH = "/etc/satellite/office.key"  # the example's key file, absent on a test machine


def test_node_toml_has_an_example_of_every_setting():
    settings = tomllib.loads(NODE_TOML.read_text())
    names = {k.replace("-", "_") for k in settings}
    missing = sorted(set(run_node.SETTINGS) - names)
    unknown = sorted(names - set(run_node.SETTINGS))
    assert not missing, f"deploy/node.toml has no example of {missing}"
    assert not unknown, f"deploy/node.toml sets {unknown}, which run_node.py does not know"


def test_node_toml_loads_through_load_config(tmp_path):
    # The example's key file lives in /etc on a Pi: point it at a fresh key here.
    key = tmp_path / "office.key"
    key.write_text(base64.b64encode(bytes(range(32))).decode() + "\n")
    text = NODE_TOML.read_text()
    assert f'key_file = "{KEY_PATH}"' in text
    config_file = tmp_path / "node.toml"
    config_file.write_text(text.replace(KEY_PATH, str(key)))

    config = run_node.load_config(["--config", str(config_file)])

    settings = {k.replace("-", "_"): v for k, v in tomllib.loads(text).items()}
    assert config["keyring"] == [bytes(range(32))]
    # Every other setting comes out as the example wrote it (bind, join, ... are already
    # in their normal form there).
    for name, value in settings.items():
        if name != "key_file":
            assert config[name] == value, f"{name}: {config[name]!r} != {value!r}"


def test_the_systemd_unit_restarts_a_failed_node_as_a_plain_user():
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.read_string(UNIT.read_text())
    assert {"Unit", "Service", "Install"} <= set(unit.sections())
    service = unit["Service"]
    assert service.get("Restart") == "on-failure"
    user = service.get("User")
    assert user and user not in ("root", "0")
    argv = shlex.split(service["ExecStart"])
    assert argv[0].startswith("/"), "systemd wants an absolute path to the executable"
    assert any(a == "run_node.py" or a.endswith("/run_node.py") for a in argv)
    assert "--config" in argv and argv.index("--config") + 1 < len(argv)
    # The I2C bus lives in /dev: hiding the devices would take the sensor away.
    assert service.get("PrivateDevices", "no") == "no"
    assert unit["Install"].get("WantedBy") == "multi-user.target"


def _python_blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.M | re.S)


def test_every_python_example_of_the_readme_compiles():
    blocks = _python_blocks(README.read_text())
    assert blocks, "the README has no ```python block"
    for number, src in enumerate(blocks, 1):
        try:
            compile(src, "README", "exec")
        except SyntaxError as exc:
            raise AssertionError(f"README python block {number}: {exc}\n{src}") from None


def test_the_readme_has_cis_test_command_word_for_word():
    lines = [line for line in (ROOT / ".ci" / "run").read_text().splitlines() if line.strip()]
    command = lines[-1].strip()
    assert "pytest" in command
    assert command in README.read_text()


def test_the_readmes_first_command_is_the_demo_office():
    first = re.search(r"^```\w*\n(.*?)^```", README.read_text(), flags=re.M | re.S)
    assert first is not None
    assert first.group(1).strip().endswith("run_node.py demo")
