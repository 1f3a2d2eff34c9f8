"""Configuration in one place: defaults < runyard.toml < RUNYARD_* variables < flags.

Every key is a field of :class:`Settings`. An invalid value stops start-up
with one line naming the key (:class:`ConfigError`).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .agents import AgentRegistry, load_agent
from .demo import DEMO_AGENTS
from .logs import FORMATS, LEVELS

DEFAULT_CONFIG_FILE = "runyard.toml"
ENV_PREFIX = "RUNYARD_"


class ConfigError(Exception):
    """A configuration value runyard cannot use; the message names the key."""


@dataclasses.dataclass(slots=True)
class Settings:
    """Every setting of a runyard process, each default stated here and nowhere else.

    The engine (:class:`~runyard.supervisor.Supervisor`) and the HTTP app read
    this object as it is; :func:`load` fills it from a file, the environment
    and flags.
    """

    host: str = "127.0.0.1"
    port: int = 2024
    db: str = "./.runyard/runyard.sqlite3"
    # Live events between replicas on one PostgreSQL --db: a Redis URL (redis://HOST:PORT/N
    # or unix:///path/redis.sock; runyard[redis]). "": replicas read each other's from the store.
    bus: str = ""
    durability: str = "events"  # "events": commit before publish; "final": final state only
    grace: float = 10.0  # seconds runs may finish on their own at shutdown
    cleanup_deadline: float = 5.0  # seconds a run's cleanup may take to persist its state
    # Seconds the commit writer holds a batch while the database cannot be reached
    # (PostgreSQL restarting): new runs get 503 meanwhile; past it, runs fail.
    store_outage_grace: float = 30.0
    heartbeat: float = 15.0  # seconds between heartbeat comments on an idle stream
    retention: float = 60.0  # seconds a finished run stays in memory
    data_retention: float = 0.0  # seconds finished runs stay in the database; 0: forever
    purge_interval: float = 300.0  # seconds between purges, when data_retention is set
    http_graceful_timeout: float = 3.0  # seconds hypercorn waits for requests after the drain
    keep_alive_timeout: float = 5.0  # seconds an idle keep-alive connection stays open
    backlog: int = 1024  # connections the kernel queues before accept (capped by somaxconn)
    max_body: int = 1024 * 1024  # bytes
    demo_agents: bool = True
    agents: dict[str, str] = dataclasses.field(default_factory=dict)  # name -> module:attr
    langgraph_json: str = ""  # serve the graphs of this langgraph.json
    # A graph run caught by a crash resumes from its last checkpoint as a new attempt,
    # instead of ending interrupted (re-running a node may repeat its side effects).
    resume_graph_runs: bool = False
    # While graphs are served, keep the process on one CPU (Linux): trio and the graph
    # thread hand the GIL over faster there (runyard.cpu_pin). Processes a graph starts
    # inherit it: false for graphs that start CPU-heavy processes.
    pin_cpu: bool = True
    log_level: str = "info"
    log_format: str = "text"  # "text": time level event key=value; "json": one object a line
    # Security and limits (docs/security.md).
    tokens: dict[str, str] = dataclasses.field(default_factory=dict)  # owner -> bearer token
    tokens_file: str = ""  # lines "owner:token"; adds to `tokens`
    insecure: bool = False  # allow a non-loopback host without tokens
    cors_origins: list[str] = dataclasses.field(default_factory=list)
    max_metadata_bytes: int = 16 * 1024
    max_active_runs: int = 5000
    max_active_runs_per_owner: int = 1000
    max_subscribers_per_run: int = 2000
    max_waits_per_owner: int = 1000
    max_event_bytes: int = 1024 * 1024
    max_events_per_run: int = 1_000_000
    # Crons and webhooks (docs/crons.md, docs/webhooks.md).
    cron_check_interval: float = 1.0  # seconds between the scheduler's looks for due crons
    webhook_secret: str = ""  # the HMAC key of the X-Runyard-Signature header; "": unsigned
    # Hosts, addresses or networks (CIDR) a webhook may reach although they are loopback,
    # link-local or private (refused otherwise).
    webhook_allowed_hosts: list[str] = dataclasses.field(default_factory=list)
    webhook_timeout: float = 10.0  # seconds one attempt may take
    webhook_retry_for: float = 3600.0  # seconds after the run's end that attempts may go on
    webhook_backoff: float = 2.0  # seconds before the first retry, doubled each time (to 5 min)

    @property
    def durable(self) -> bool:
        """Whether each event is committed before it is published."""
        return self.durability == "events"

    def bearer_tokens(self) -> dict[str, str]:
        """token -> owner, from ``tokens`` and ``tokens_file``."""
        pairs = dict(self.tokens)
        if self.tokens_file:
            try:
                lines = Path(self.tokens_file).read_text().splitlines()
            except OSError as exc:
                raise ConfigError(
                    f"tokens_file: cannot read {self.tokens_file} ({exc.strerror})"
                ) from None
            for number, line in enumerate(lines, 1):
                line = line.strip()
                if not line or line.startswith("#"):
                    continue
                owner, sep, token = line.partition(":")
                if not sep or not owner.strip() or not token.strip():
                    raise ConfigError(f"tokens_file: line {number} is not 'owner:token'")
                pairs[owner.strip()] = token.strip()
        for owner, token in pairs.items():
            if len(token) < 16:
                raise ConfigError(f"tokens.{owner}: a token must be at least 16 characters")
        return {token: owner for owner, token in pairs.items()}

    def check_exposure(self) -> None:
        """Refuse to serve beyond loopback without tokens, unless told ``insecure``."""
        if self.insecure or _is_loopback(self.host) or self.bearer_tokens():
            return
        raise ConfigError(
            f"host: {self.host} is reachable beyond this machine and no tokens are configured;"
            " set tokens (or tokens_file), or pass --insecure"
        )

    def registry(self) -> AgentRegistry:
        registry = AgentRegistry(list(DEMO_AGENTS) if self.demo_agents else [])
        for name, spec in self.agents.items():
            try:
                registry.add(load_agent(spec, name))
            except ValueError as exc:
                raise ConfigError(f"agents.{name}: {exc}") from None
        if self.langgraph_json:
            try:
                from .langgraph import load_langgraph_json

                for graph in load_langgraph_json(self.langgraph_json):
                    registry.add(graph)
            except ImportError as exc:
                raise ConfigError(
                    f"langgraph_json: LangGraph is not installed ({exc.name});"
                    " pip install 'runyard[langgraph]'"
                ) from None
            except ValueError as exc:
                raise ConfigError(str(exc)) from None
        return registry


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


_FIELDS = {f.name: f for f in dataclasses.fields(Settings)}
# Seconds that 0 would turn into a busy loop.
_POSITIVE = frozenset(
    {"purge_interval", "heartbeat", "cron_check_interval", "webhook_timeout", "webhook_backoff"}
)
_CHOICES = {
    "durability": ("events", "final"),
    "log_level": LEVELS,
    "log_format": FORMATS,
}


def _coerce(key: str, value: Any) -> Any:
    """Turn a TOML, environment or flag value into the field's type, or raise."""
    kind = str(_FIELDS[key].type)
    try:
        if kind == "int" and not isinstance(value, bool):
            result: Any = int(value)
        elif kind == "float" and not isinstance(value, bool):
            result = float(value)
            if result < 0 or result != result or (result == 0 and key in _POSITIVE):
                raise ValueError
        elif kind == "bool":
            if isinstance(value, str):
                if value.lower() not in ("1", "0", "true", "false", "yes", "no"):
                    raise ValueError
                value = value.lower() in ("1", "true", "yes")
            if not isinstance(value, bool):
                raise ValueError
            result = value
        elif kind == "str" and isinstance(value, str):
            result = value
        elif kind.startswith("list"):
            if isinstance(value, str):
                value = [v.strip() for v in value.split(",") if v.strip()]
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ValueError
            result = list(value)
        elif kind.startswith("dict") and isinstance(value, Mapping):
            if not all(isinstance(v, str) for v in value.values()):
                raise ValueError
            result = dict(value)
        else:
            raise ValueError
    except (TypeError, ValueError):
        kind_name = "number > 0" if key in _POSITIVE else _describe(kind)
        raise ConfigError(f"{key}: {value!r} is not a valid {kind_name}") from None
    if key in _CHOICES and result not in _CHOICES[key]:
        raise ConfigError(f"{key}: {value!r} is not one of {', '.join(_CHOICES[key])}")
    if kind == "int" and key != "port" and result < 1:
        raise ConfigError(f"{key}: {value!r} must be at least 1")
    if key == "port" and not 0 <= result <= 65535:
        raise ConfigError(f"port: {value!r} is not a TCP port")
    return result


def _describe(kind: str) -> str:
    if kind.startswith("list"):
        return "list of strings"
    return {"int": "whole number", "float": "number >= 0", "bool": "true/false"}.get(
        kind, "table of name = 'string'" if kind.startswith("dict") else "string"
    )


def load(
    path: str | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Settings from a TOML file (``path``, else ./runyard.toml if present), env, flags."""
    values: dict[str, Any] = {}
    file = Path(path) if path else Path(DEFAULT_CONFIG_FILE)
    if path or file.exists():
        values.update(_from_toml(file))
    environ = os.environ if env is None else env
    for key in _FIELDS:
        raw = environ.get(ENV_PREFIX + key.upper())
        if raw is not None and key not in ("agents", "tokens"):
            values[key] = _coerce(key, raw)
    for key, value in (overrides or {}).items():
        if value is not None:
            values[key] = _coerce(key, value)
    return Settings(**values)


def _from_toml(file: Path) -> dict[str, Any]:
    try:
        data = tomllib.loads(file.read_text())
    except FileNotFoundError:
        raise ConfigError(f"config: {file} does not exist") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config: {file} is not valid TOML ({exc})") from None
    if file.name == "pyproject.toml":
        data = data.get("tool", {}).get("runyard", {})
    data = data.get("runyard", data)  # a [runyard] table, or keys at the top
    values: dict[str, Any] = {}
    for key, value in data.items():
        if key not in _FIELDS:
            raise ConfigError(f"{key}: unknown setting (in {file})")
        values[key] = _coerce(key, value)
    return values
