"""Configuration: file < environment < flags, and one clear line for a bad key."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from runyard.config import ConfigError, Settings, load
from runyard.server import _hypercorn_config


def test_defaults_are_the_embedded_ones(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    s = load(env={})
    assert (s.host, s.port, s.durability) == ("127.0.0.1", 2024, "events")
    assert s.db == "./.runyard/runyard.sqlite3"
    assert s.registry().names() == ["echo", "emitter", "failing", "sleepy", "typewriter"]


def test_file_then_environment_then_flags(tmp_path: Path) -> None:
    file = tmp_path / "runyard.toml"
    file.write_text('port = 3000\ngrace = 2.5\n[agents]\nshout = "runyard.demo:echo"\n')
    s = load(str(file), env={"RUNYARD_PORT": "3001", "RUNYARD_HEARTBEAT": "1"})
    assert (s.port, s.grace, s.heartbeat) == (3001, 2.5, 1.0)
    assert "shout" in s.registry().names()
    s = load(str(file), env={"RUNYARD_PORT": "3001"}, overrides={"port": 3002})
    assert s.port == 3002


def test_the_listen_backlog_reaches_hypercorn() -> None:
    # hypercorn's own default (100) turns a burst of new connections into 1 s SYN retries.
    assert _hypercorn_config(load(env={})).backlog == 1024
    assert _hypercorn_config(load(env={"RUNYARD_BACKLOG": "4096"})).backlog == 4096


def test_pyproject_tool_table_is_read(tmp_path: Path) -> None:
    file = tmp_path / "pyproject.toml"
    file.write_text('[project]\nname = "x"\n[tool.runyard]\ndurability = "final"\n')
    assert load(str(file), env={}).durability == "final"


@pytest.mark.parametrize(
    ("text", "env", "message"),
    [
        ("port = 'high'\n", {}, "port: 'high' is not a valid whole number"),
        ("colour = 1\n", {}, "colour: unknown setting"),
        ("durability = 'sometimes'\n", {}, "durability: 'sometimes' is not one of events, final"),
        ("", {"RUNYARD_GRACE": "-3"}, "grace: '-3' is not a valid number >= 0"),
        ("port = [\n", {}, "is not valid TOML"),
        ("[agents]\nx = 'nowhere.at.all:thing'\n", {}, "agents.x: agent 'nowhere.at.all:thing'"),
        ("purge_interval = 0\n", {}, "purge_interval: 0 is not a valid number > 0"),
    ],
)
def test_a_bad_value_names_its_key(
    tmp_path: Path, text: str, env: dict[str, str], message: str
) -> None:
    file = tmp_path / "runyard.toml"
    file.write_text(text)
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("(", r"\(")):
        load(str(file), env=env).registry()


def test_serve_check_validates_and_exits(tmp_path: Path) -> None:
    good = subprocess.run(
        [sys.executable, "-m", "runyard.cli", "serve", "--check", "--db", str(tmp_path / "x")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert good.returncode == 0
    assert "configuration is valid (5 agents)" in good.stdout
    bad_file = tmp_path / "bad.toml"
    bad_file.write_text("port = -5\n")
    bad = subprocess.run(
        [sys.executable, "-m", "runyard.cli", "serve", "--check", "--config", str(bad_file)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert bad.returncode == 2
    assert bad.stderr.strip() == "runyard: configuration error: port: -5 is not a TCP port"


@pytest.mark.parametrize(
    ("db", "bus", "message"),
    [
        ("x.sqlite3", "redis://127.0.0.1:6379/0", "bus: replicas share a PostgreSQL --db"),
        ("postgresql://u@/db", "http://127.0.0.1/", "is not redis://HOST:PORT/N"),
    ],
)
def test_a_bus_that_cannot_serve_is_a_configuration_error(
    tmp_path: Path, db: str, bus: str, message: str
) -> None:
    checked = subprocess.run(
        [sys.executable, "-m", "runyard.cli", "serve", "--check", "--db", db, "--bus", bus],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert checked.returncode == 2
    assert checked.stderr.startswith("runyard: configuration error: bus: ")
    assert message in checked.stderr
    assert len(checked.stderr.strip().splitlines()) == 1  # one line, no traceback


def test_settings_are_plain_data() -> None:
    assert Settings().grace == 10.0


def test_the_examples_folder_serves_its_agents(monkeypatch: pytest.MonkeyPatch) -> None:
    examples = Path(__file__).resolve().parent.parent / "examples"
    monkeypatch.chdir(examples)
    registry = load("runyard.toml", env={}).registry()
    assert {"counter", "talker"} <= set(registry.names())
    talker = registry.get("talker")
    assert talker is not None
    assert talker.asyncio


@pytest.mark.parametrize(
    ("graphs", "source", "message"),
    [
        ({"g": "./agent.ts:graph"}, "", "is not a Python file"),
        ({"g": "./graph.py:make"}, "def make(config):\n    return None\n", "factory failed"),
        ({"g": "no_such_module_here:graph"}, "", "No module named"),
    ],
)
def test_a_bad_langgraph_json_entry_is_one_line_not_a_traceback(
    tmp_path: Path, graphs: dict[str, str], source: str, message: str
) -> None:
    (tmp_path / "graph.py").write_text(source)
    spec = tmp_path / "langgraph.json"
    spec.write_text(json.dumps({"graphs": graphs}))
    with pytest.raises(ConfigError, match=message):
        Settings(langgraph_json=str(spec)).registry()
