"""The deployment files agree with the code they deploy.

``deploy/Dockerfile``, ``deploy/runyard.service`` and ``docs/deploy.md`` each
state a stop timeout, and ``runyard.server.shutdown_bound`` says how long a
drain may take: these tests parse the files, so the two cannot drift apart.
The replicas' compose file (``deploy/compose.replicas.yml``) and its HAProxy
configuration are read the same way: each replica's command through
runyard's own parser and settings, the load balancer against the replicas.
They run everywhere, in well under a second.

Where a Docker daemon answers, the image is also built and run for real, on
the host network so that every request stays on 127.0.0.1 (Linux). A machine
that cannot pull ``python:3.11-slim`` can name a local image of the same kind
in ``RUNYARD_TEST_PYTHON_IMAGE``. Elsewhere that test is skipped, with the
reason.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shlex
import shutil
import sqlite3
import subprocess
import sys
import time
import tomllib
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
import yaml  # type: ignore[import-untyped,unused-ignore]  # PyYAML: the test extra has it

from runyard.cli import build_parser
from runyard.config import ConfigError, Settings, load
from runyard.redis_fanout import RedisFanOut
from runyard.server import Server, fanout_for, shutdown_bound
from runyard.store.url import is_postgres

from .process import free_port

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
UNIT = ROOT / "deploy" / "runyard.service"
GUIDE = ROOT / "docs" / "deploy.md"
COMPOSE = ROOT / "deploy" / "compose.replicas.yml"
HAPROXY = ROOT / "deploy" / "haproxy.replicas.cfg"
PYPROJECT = ROOT / "pyproject.toml"
# What the compose file's ${VARIABLES} stand for here (deploy/.env holds the real ones).
COMPOSE_VARIABLES = {"POSTGRES_PASSWORD": "compose-test-password"}
# What the Dockerfile's COPY lines take from the tree: the whole build context the test sends.
BUILD_FILES = ("pyproject.toml", "README.md", "LICENSE", "src")
TEST_IMAGE = "runyard-deploy-test"
TOKEN = "deploy-test-token-0123456789"
# A short grace keeps the real `docker stop` quick; the bound follows from it.
DOCKER_GRACE = 2.0


@dataclasses.dataclass(frozen=True, slots=True)
class Instruction:
    keyword: str
    args: str


def dockerfile(text: str) -> list[Instruction]:
    """Instructions with continuation lines joined and comment lines dropped."""
    lines: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        lines.append(pending + line)
        pending = ""
    assert not pending, "the Dockerfile ends inside a continuation"
    found = []
    for line in lines:
        keyword, _, args = line.partition(" ")
        found.append(Instruction(keyword.upper(), args.strip()))
    return found


def final_stage() -> list[Instruction]:
    instructions = dockerfile(DOCKERFILE.read_text())
    starts = [i for i, ins in enumerate(instructions) if ins.keyword == "FROM"]
    assert starts, "no FROM in the Dockerfile"
    return instructions[starts[-1] :]


def only(stage: list[Instruction], keyword: str) -> str:
    found = [ins.args for ins in stage if ins.keyword == keyword]
    assert len(found) == 1, f"{keyword}: expected one in the final stage, found {found}"
    return found[0]


def image_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for ins in final_stage():
        if ins.keyword == "ENV":
            for pair in shlex.split(ins.args):
                key, sep, value = pair.partition("=")
                assert sep, f"ENV {pair}: write ENV KEY=VALUE"
                env[key] = value
    return env


def unit() -> dict[str, list[tuple[str, str]]]:
    """Sections of the unit file: each a list of (key, value), repeats kept."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] | None = None
    for raw in UNIT.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], [])
            continue
        assert current is not None, f"{line!r} before any section"
        key, sep, value = line.partition("=")
        assert sep, f"{line!r} is not KEY=VALUE"
        current.append((key.strip(), value.strip()))
    return sections


def service(key: str) -> list[str]:
    return [v for k, v in unit()["Service"] if k == key]


def unit_env() -> dict[str, str]:
    pairs = (pair.partition("=") for value in service("Environment") for pair in shlex.split(value))
    return {key: value for key, _, value in pairs}


def settings_from(env: dict[str, str], tmp_path: Path) -> Settings:
    """The settings a process with this environment gets (no runyard.toml)."""
    empty = tmp_path / "empty.toml"
    empty.write_text("")
    return load(str(empty), env={k: v for k, v in env.items() if k.startswith("RUNYARD_")})


def seconds(value: str) -> float:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*s?", value)
    assert match, f"{value!r}: write the timeout in seconds"
    return float(match.group(1))


def haproxy_seconds(value: str) -> float:
    """A duration as HAProxy writes one (``5s``, ``1h``, ``500ms``; bare: milliseconds)."""
    match = re.fullmatch(r"(\d+)(ms|s|m|h|d)?", value)
    assert match, f"{value!r}: not a duration HAProxy reads"
    unit = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, None: 0.001}[match.group(2)]
    return int(match.group(1)) * unit


def healthcheck() -> tuple[dict[str, float], list[str]]:
    """The HEALTHCHECK's options, in seconds, and its exec-form command."""
    args = only(final_stage(), "HEALTHCHECK")
    options, cmd_keyword, command = args.partition(" CMD ")
    assert cmd_keyword, f"HEALTHCHECK {args}: expected options then CMD [...]"
    parsed = {}
    for option in shlex.split(options):
        name, _, value = option.removeprefix("--").partition("=")
        parsed[name] = seconds(value) if name != "retries" else float(value)
    argv = json.loads(command)
    assert isinstance(argv, list), "write the HEALTHCHECK command in exec form, a JSON list"
    return parsed, [str(a) for a in argv]


def compose() -> dict[str, Any]:
    """The replicas' compose file, its ${VARIABLES} filled in as Compose fills them."""
    loaded = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(loaded, dict)
    filled = _interpolated(loaded)
    assert isinstance(filled, dict)
    return filled


def _interpolated(value: object) -> object:
    """``${NAME}`` and ``${NAME:?message}`` in every string, from COMPOSE_VARIABLES."""
    if isinstance(value, dict):
        return {key: _interpolated(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_interpolated(item) for item in value]
    if isinstance(value, str):

        def fill(match: re.Match[str]) -> str:
            name = match.group(1)
            assert name in COMPOSE_VARIABLES, f"${{{name}}}: a variable these tests do not know"
            return COMPOSE_VARIABLES[name]

        return re.sub(r"\$\{(\w+)(?::\?[^}]*)?\}", fill, value)
    return value


def replicas() -> dict[str, dict[str, Any]]:
    """The compose services that run runyard: those built from deploy/Dockerfile."""
    services: dict[str, dict[str, Any]] = compose()["services"]
    found = {
        name: service
        for name, service in services.items()
        if isinstance(service.get("build"), dict)
        and service["build"].get("dockerfile") == DOCKERFILE.relative_to(ROOT).as_posix()
    }
    assert found, "no service of compose.replicas.yml is built from deploy/Dockerfile"
    return found


def service_env(service: dict[str, Any]) -> dict[str, str]:
    """A service's environment: the image's, then the service's own on top."""
    env = service.get("environment", {})
    assert isinstance(env, dict), "write a service's environment as a mapping"
    return {**image_env(), **{key: str(value) for key, value in env.items()}}


def serve_settings(command: list[str], env: dict[str, str], tmp_path: Path) -> Settings:
    """The settings ``runyard serve COMMAND`` gets with this environment (no runyard.toml):
    what each flag sets overrides the environment, as in ``runyard.cli``."""
    args = build_parser().parse_args(["serve", *command])
    assert args.command == "serve"
    assert args.config is None, "these tests read no runyard.toml"
    fields = {field.name for field in dataclasses.fields(Settings)}
    flags = {
        key: value
        for key, value in vars(args).items()
        if key in fields and value is not None and value is not False
    }
    empty = tmp_path / "empty.toml"
    empty.write_text("")
    runyard_env = {k: v for k, v in env.items() if k.startswith("RUNYARD_")}
    return load(str(empty), env=runyard_env, overrides=flags)


def haproxy() -> dict[str, list[list[str]]]:
    """HAProxy's sections (``backend replicas``, ...): each a list of its lines' words."""
    sections: dict[str, list[list[str]]] = {}
    current: list[list[str]] | None = None
    for raw in HAPROXY.read_text().splitlines():
        line = raw.split("#", 1)[0]
        if not line.strip():
            continue
        words = line.split()
        if not line[0].isspace():
            current = sections.setdefault(" ".join(words), [])
            continue
        assert current is not None, f"{raw!r} before any section"
        current.append(words)
    return sections


def directive(section: list[list[str]], *words: str) -> list[list[str]]:
    """The lines of ``section`` that begin with ``words``, without them."""
    return [line[len(words) :] for line in section if line[: len(words)] == list(words)]


# Everywhere: the files against the code.


def test_docker_stop_timeouts_outlast_the_shutdown_bound(tmp_path: Path) -> None:
    bound = max(shutdown_bound(Settings()), shutdown_bound(settings_from(image_env(), tmp_path)))
    in_dockerfile = re.findall(r"--stop-timeout[ =](\d+)", DOCKERFILE.read_text())
    guide = GUIDE.read_text()
    in_guide = re.findall(r"--stop-timeout[ =](\d+)", guide)
    compose = re.findall(r"stop_grace_period:\s*(\d+)s", guide)
    kubernetes = re.findall(r"terminationGracePeriodSeconds:\s*(\d+)", guide)
    assert in_dockerfile, "the Dockerfile's usage comment should show docker run --stop-timeout"
    assert in_guide, "docs/deploy.md should show docker run --stop-timeout"
    assert compose, "docs/deploy.md should show compose's stop_grace_period"
    for timeout in in_dockerfile + in_guide + compose + kubernetes:
        assert float(timeout) > bound, f"a stop timeout of {timeout} s is below the {bound} s bound"


def test_the_unit_waits_longer_than_the_shutdown_bound_after_sigterm(tmp_path: Path) -> None:
    env = unit_env()
    bound = max(shutdown_bound(Settings()), shutdown_bound(settings_from(env, tmp_path)))
    (stop,) = service("TimeoutStopSec")
    assert seconds(stop) > bound
    for timeout in re.findall(r"TimeoutStopSec=(\d+)", GUIDE.read_text()):
        assert float(timeout) > bound
    assert service("KillSignal") == ["SIGTERM"]
    assert service("Type") == ["simple"]
    assert service("Restart") == ["on-failure"]


def test_the_unit_runs_runyard_serve_from_its_venv_as_a_dedicated_user(tmp_path: Path) -> None:
    (exec_start,) = service("ExecStart")
    argv = shlex.split(exec_start)
    assert argv[0].endswith("/venv/bin/runyard")
    args = build_parser().parse_args(argv[1:])  # flags runyard serve knows
    assert args.command == "serve"
    (user,) = service("User")
    assert user not in ("root", "0")
    env = unit_env()
    settings = settings_from(env, tmp_path)
    settings.check_exposure()  # loopback: serves without tokens
    (state,) = service("StateDirectory")
    assert Path(settings.db).parent == Path("/var/lib") / state
    assert Path(settings.db).parent.as_posix() in service("ReadWritePaths")
    assert service("ProtectSystem") == ["strict"]
    assert service("NoNewPrivileges") == ["yes"]
    assert service("PrivateTmp") == ["yes"]


def test_the_image_runs_as_its_own_user_with_the_database_in_the_volume(tmp_path: Path) -> None:
    stage = final_stage()
    user = only(stage, "USER")
    assert user not in ("root", "0")
    created = " ".join(ins.args for ins in stage if ins.keyword == "RUN")
    uid = re.search(rf"useradd --uid (\d+) .*{user}", created)
    assert uid, f"the final stage should create the user {user} with a fixed uid"
    # The guide tells how to chown a bind mount or tokens file for that uid.
    assert f"{uid.group(1)}:{uid.group(1)}" in GUIDE.read_text()
    settings = settings_from(image_env(), tmp_path)
    volumes = json.loads(only(stage, "VOLUME"))
    assert Path(settings.db).parent.as_posix() in volumes
    assert only(stage, "STOPSIGNAL") == "SIGTERM"
    assert json.loads(only(stage, "ENTRYPOINT")) == ["runyard", "serve"]


def test_the_image_refuses_to_serve_beyond_loopback_without_tokens(tmp_path: Path) -> None:
    env = image_env()
    settings = settings_from(env, tmp_path)
    assert settings.host == "0.0.0.0"
    with pytest.raises(ConfigError, match="no tokens are configured"):
        settings.check_exposure()
    tokens = tmp_path / "tokens"
    tokens.write_text(f"alice:{TOKEN}\n")
    settings_from({**env, "RUNYARD_TOKENS_FILE": str(tokens)}, tmp_path).check_exposure()


def test_the_image_healthcheck_asks_ok_in_python_within_its_timeout() -> None:
    options, argv = healthcheck()
    assert argv[:2] == ["python", "-c"]
    assert "/ok" in argv[2]
    assert not re.search(r"\b(curl|wget)\b", " ".join(argv)), "the image has neither"
    assert options["timeout"] < options["interval"]
    # The request gives up before Docker does, so a hung server reads as a failed check.
    (request_timeout,) = re.findall(r"timeout=(\d+)", argv[2])
    assert float(request_timeout) < options["timeout"]


async def test_the_healthcheck_command_passes_on_a_live_server_and_fails_with_1_without(
    server: Server,
) -> None:
    _, argv = healthcheck()
    command = [sys.executable, *argv[1:]]  # the image's `python` is its venv's
    with trio.fail_after(30):
        up = await trio.run_process(
            command,
            env={**os.environ, "RUNYARD_PORT": str(server.port)},
            check=False,
            capture_stderr=True,
        )
        down = await trio.run_process(
            command,
            env={**os.environ, "RUNYARD_PORT": str(free_port())},
            check=False,
            capture_stderr=True,
        )
    assert up.returncode == 0, up.stderr
    # Docker reads 1 as unhealthy; 2 is reserved.
    assert down.returncode == 1


# The replicas' compose file and its load balancer.


def test_every_compose_replica_serves_one_database_and_bus(tmp_path: Path) -> None:
    services = compose()["services"]
    found = replicas()
    served = set()
    for name, service in found.items():
        settings = serve_settings(service["command"], service_env(service), tmp_path)
        assert is_postgres(settings.db), f"{name}: --db should name PostgreSQL"
        assert isinstance(fanout_for(settings), RedisFanOut), f"{name}: --bus should name Redis"
        assert urllib.parse.urlsplit(settings.bus).hostname in services, "Redis is a service"
        served.add((settings.db, settings.bus))
    assert len(found) == 3
    assert len(served) == 1, f"the replicas differ in --db or --bus: {served}"


def test_the_compose_replicas_bind_beyond_loopback_with_their_tokens_file(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text(f"alice:{TOKEN}\n")
    secrets = compose()["secrets"]
    for name, service in replicas().items():
        env = service_env(service)
        without = serve_settings(service["command"], {**env, "RUNYARD_TOKENS_FILE": ""}, tmp_path)
        assert not without.insecure
        with pytest.raises(ConfigError, match="no tokens are configured"):
            without.check_exposure()
        secret = Path(env["RUNYARD_TOKENS_FILE"])
        assert secret.parent == Path("/run/secrets"), f"{name}: the tokens file is a secret"
        assert secret.name in service["secrets"]
        assert secret.name in secrets
        with_tokens = {**env, "RUNYARD_TOKENS_FILE": str(tokens)}
        serve_settings(service["command"], with_tokens, tmp_path).check_exposure()


def test_the_compose_database_url_names_the_postgres_service_and_no_password(
    tmp_path: Path,
) -> None:
    services: dict[str, dict[str, Any]] = compose()["services"]
    for name, service in replicas().items():
        env = service_env(service)
        url = urllib.parse.urlsplit(serve_settings(service["command"], env, tmp_path).db)
        # A password in --db would show in the process list: libpq reads PGPASSWORD.
        assert url.password is None, name
        assert url.hostname is not None
        database = services[url.hostname]
        assert database["image"].startswith("postgres:15")
        wanted = database["environment"]
        assert url.username == wanted["POSTGRES_USER"]
        assert url.path == "/" + wanted["POSTGRES_DB"]
        assert env["PGPASSWORD"] == wanted["POSTGRES_PASSWORD"]
        assert service["depends_on"][url.hostname] == {"condition": "service_healthy"}


def test_the_compose_replicas_are_built_with_the_postgres_and_redis_extras() -> None:
    extras = tomllib.loads(PYPROJECT.read_text())["project"]["optional-dependencies"]
    for name, service in replicas().items():
        build = service["build"]
        assert (COMPOSE.parent / build["context"]).resolve() == ROOT, f"{name}: build from the root"
        wanted = set(build["args"]["EXTRAS"].split(","))
        assert {"postgres", "redis"} <= wanted <= set(extras), f"{name}: EXTRAS {wanted}"


def test_compose_waits_longer_than_the_shutdown_bound_before_killing_a_replica(
    tmp_path: Path,
) -> None:
    for name, service in replicas().items():
        settings = serve_settings(service["command"], service_env(service), tmp_path)
        bound = max(shutdown_bound(Settings()), shutdown_bound(settings))
        assert seconds(service["stop_grace_period"]) > bound, name
        assert service["restart"] == "unless-stopped"


def test_the_load_balancer_sends_round_robin_to_every_ready_replica(tmp_path: Path) -> None:
    sections = haproxy()
    (backend,) = directive(sections["frontend runyard"], "default_backend")
    replicas_backend = sections[f"backend {backend[0]}"]
    servers = {address for _, address, *_ in directive(replicas_backend, "server")}
    wanted = set()
    for name, service in replicas().items():
        settings = serve_settings(service["command"], service_env(service), tmp_path)
        wanted.add(f"{name}:{settings.port}")
    assert servers == wanted
    assert directive(replicas_backend, "balance") == [["roundrobin"]]
    # Checked on /ready (503 while starting, draining or without a store), every server.
    (send,) = directive(replicas_backend, "http-check", "send")
    assert send[send.index("uri") + 1] == "/ready"
    assert directive(replicas_backend, "http-check", "expect") == [["status", "200"]]
    (defaults,) = directive(replicas_backend, "default-server")
    assert "check" in defaults
    # Streams and waits outlast their quiet moments: heartbeats, a wait's newline every 5 s.
    timeouts = {words[0]: words[1] for words in directive(sections["defaults"], "timeout")}
    for side in ("client", "server"):
        assert haproxy_seconds(timeouts[side]) > Settings().heartbeat, side
    # Published as compose says, in front of every replica.
    lb = compose()["services"]["haproxy"]
    (bind,) = directive(sections["frontend runyard"], "bind")
    (published,) = lb["ports"]
    assert published.rsplit(":", 1)[1] == bind[0].rsplit(":", 1)[1]
    assert set(lb["depends_on"]) == set(replicas())
    (mounted,) = lb["volumes"]
    assert (COMPOSE.parent / mounted.split(":")[0]).resolve() == HAPROXY


async def test_the_compose_healthcheck_passes_when_ready_and_fails_with_1_otherwise(
    server: Server,
) -> None:
    checks = {tuple(service["healthcheck"]["test"]) for service in replicas().values()}
    (test,) = checks
    assert test[:3] == ("CMD", "python", "-c")
    assert "/ready" in test[3]
    command = [sys.executable, *test[2:]]  # the image's `python` is its venv's

    async def check(port: int) -> int:
        env = {**os.environ, "RUNYARD_PORT": str(port)}
        done = await trio.run_process(command, env=env, check=False, capture_stderr=True)
        return done.returncode

    with trio.fail_after(30):
        ready = await check(server.port)
        server.supervisor.draining = True  # /ready says 503 from now on
        try:
            draining = await check(server.port)
        finally:
            server.supervisor.draining = False
        down = await check(free_port())
    assert (ready, draining, down) == (0, 1, 1)


# Where Docker answers: the image itself.


def _docker() -> str:
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("docker is not installed")
    try:
        info = subprocess.run(
            [docker, "info", "--format", "{{.ServerVersion}}"],
            capture_output=True,
            text=True,
            timeout=15,
        )
    except subprocess.TimeoutExpired:
        pytest.skip("the Docker daemon did not answer `docker info` within 15 s")
    if info.returncode != 0:
        reason = (info.stderr.strip().splitlines() or ["no output"])[-1]
        pytest.skip(f"the Docker daemon does not answer: {reason}")
    return docker


# Seconds a pull of the base image may take before the test is skipped (offline machines).
PULL_LIMIT = 60


def _base_image(docker: str) -> str:
    """The image to build on: the Dockerfile's default, or RUNYARD_TEST_PYTHON_IMAGE."""
    default = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", DOCKERFILE.read_text(), re.M)
    assert default, "the Dockerfile should name its base in ARG PYTHON_IMAGE=..."
    base = os.environ.get("RUNYARD_TEST_PYTHON_IMAGE", default.group(1))
    have = subprocess.run([docker, "image", "inspect", base], capture_output=True, timeout=30)
    if have.returncode != 0:
        try:
            pulled = subprocess.run(
                [docker, "pull", base], capture_output=True, text=True, timeout=PULL_LIMIT
            )
        except subprocess.TimeoutExpired:
            pytest.skip(f"pulling {base} took over {PULL_LIMIT} s (no registry reachable?)")
        if pulled.returncode != 0:
            pytest.skip(
                f"cannot pull {base} ({pulled.stderr.strip()[-200:]});"
                " set RUNYARD_TEST_PYTHON_IMAGE to a local python:3.11 image"
            )
    return base


def _run(*argv: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def image(tmp_path: Path) -> str:
    docker = _docker()
    base = _base_image(docker)
    context = tmp_path / "context"
    context.mkdir()
    for name in BUILD_FILES:
        source = ROOT / name
        if source.is_dir():
            ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
            shutil.copytree(source, context / name, ignore=ignore)
        else:
            shutil.copy2(source, context / name)
    built = _run(
        docker,
        "build",
        "--network",
        "host",
        "--file",
        str(DOCKERFILE),
        "--build-arg",
        f"PYTHON_IMAGE={base}",
        "--tag",
        TEST_IMAGE,
        str(context),
        timeout=900,
    )
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    return TEST_IMAGE


@pytest.fixture
def container_name() -> Iterator[str]:
    name = f"runyard-deploy-test-{os.getpid()}"
    yield name
    docker = shutil.which("docker")
    if docker is not None:
        _run(docker, "rm", "--force", "--volumes", name)


def _wait_healthy(docker: str, name: str, limit: float = 90) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        state = _run(
            docker, "inspect", "--format", "{{.State.Status}} {{.State.Health.Status}}", name
        )
        status = state.stdout.split()
        if status[:1] == ["exited"]:
            raise AssertionError(f"the container exited:\n{_run(docker, 'logs', name).stderr}")
        if status[1:] == ["healthy"]:
            return
        time.sleep(0.5)
    raise AssertionError(f"not healthy after {limit} s:\n{_run(docker, 'logs', name).stderr}")


@pytest.mark.slow
def test_the_image_serves_with_a_token_and_stops_cleanly_within_the_bound(
    image: str, container_name: str, tmp_path: Path
) -> None:
    docker = _docker()
    # Without tokens, binding 0.0.0.0: one line, exit 2, nothing served.
    refused = _run(docker, "run", "--rm", "--network", "host", image)
    assert refused.returncode == 2, refused.stderr
    assert "no tokens are configured" in refused.stderr

    # The shortest stop timeout the Dockerfile shows, as a user would pass it.
    stop_timeout = min(re.findall(r"--stop-timeout (\d+)", DOCKERFILE.read_text()), key=int)
    tokens = tmp_path / "tokens"
    tokens.write_text(f"alice:{TOKEN}\n")
    tokens.chmod(0o644)  # read by the image's user, not root
    port = free_port()
    started = _run(
        docker, "run", "--detach", "--name", container_name, "--network", "host",
        "--stop-timeout", stop_timeout, "--health-interval", "1s",
        "--env", f"RUNYARD_PORT={port}", "--env", f"RUNYARD_GRACE={DOCKER_GRACE}",
        "--env", "RUNYARD_TOKENS_FILE=/run/secrets/runyard_tokens",
        "--volume", f"{tokens}:/run/secrets/runyard_tokens:ro",
        image,
    )  # fmt: skip
    assert started.returncode == 0, started.stderr
    _wait_healthy(docker, container_name)

    auth = {"Authorization": f"Bearer {TOKEN}"}
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
        assert client.get("/ok").status_code == 200
        body = {"assistant_id": "echo", "input": {"hello": "docker"}}
        assert client.post("/runs/wait", json=body).status_code == 401
        answered = client.post("/runs/wait", json=body, headers=auth)
        assert (answered.status_code, answered.json()) == (200, {"hello": "docker"})
        sleepy = {"assistant_id": "sleepy", "input": {"delay": 600}}
        long_run = client.post("/runs", json=sleepy, headers=auth).json()["run_id"]

    # The guide's backup command, as written, against the live database.
    (backup,) = [
        line
        for line in GUIDE.read_text().splitlines()
        if "VACUUM INTO" in line and "docker exec" in line
    ]
    argv = shlex.split(backup)
    argv[argv.index("exec") + 1] = container_name
    backed_up = _run(docker, *argv[1:])
    assert backed_up.returncode == 0, backed_up.stderr
    copy = tmp_path / "backup.sqlite3"
    assert _run(docker, "cp", f"{container_name}:/data/backup.sqlite3", str(copy)).returncode == 0
    with sqlite3.connect(copy) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert conn.execute("SELECT count(*) FROM runs").fetchone() == (2,)

    began = time.monotonic()
    stopped = _run(docker, "stop", container_name, timeout=float(stop_timeout) + 30)
    took = time.monotonic() - began
    assert stopped.returncode == 0, stopped.stderr
    state = _run(docker, "inspect", "--format", "{{.State.ExitCode}}", container_name)
    logs = _run(docker, "logs", container_name).stderr
    assert state.stdout.strip() == "0", logs
    assert took < shutdown_bound(Settings(grace=DOCKER_GRACE)), logs

    # The final state is in the volume.
    query = (
        "import sqlite3, json; print(json.dumps(sqlite3.connect('/data/runyard.sqlite3')"
        f".execute('SELECT status, cancel_reason FROM runs WHERE run_id = ?', ('{long_run}',))"
        ".fetchone()))"
    )
    read = _run(
        docker, "run", "--rm", "--volumes-from", container_name, "--entrypoint", "python", image,
        "-c", query,
    )  # fmt: skip
    assert read.returncode == 0, read.stderr
    assert json.loads(read.stdout) == ["interrupted", "shutdown"]
