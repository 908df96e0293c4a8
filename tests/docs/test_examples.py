"""Every example under docs/examples runs, against the test server.

The examples read the server's address from FERROPOOL_DSN, as the guides
say. Flask, FastAPI, SQLAlchemy, the psycopg2 adapters, psycopg_pool code
and the metrics example run in this process (Flask's test client, FastAPI's
TestClient over httpx); the Django project and gunicorn run as real
servers in their own processes (Django's settings are per process, and
gunicorn forks workers), answering HTTP requests on a free port.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import importlib.util
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from ferropool.cli.embedded import free_port
from tests.fixtures.helpers import DEADLINE, count_backends, wait_until

EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples"


@pytest.fixture
def example_env(dsn: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("FERROPOOL_DSN", dsn)
    monkeypatch.syspath_prepend(str(EXAMPLES))
    return dsn


def load(name: str) -> ModuleType:
    """Import docs/examples/<name>.py afresh, as a module of its own."""
    spec = importlib.util.spec_from_file_location(f"docs_example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # Registered first: SQLAlchemy resolves the models' annotations there.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def get_json(url: str, timeout: float = 10.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        assert r.status == 200
        return json.loads(r.read())


class Servers:
    """Server processes started by a test, each logging to a file; stopped
    (and reaped) at the end whatever happens."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.procs: list[tuple[subprocess.Popen[bytes], Path]] = []

    def start(self, args: list[str], cwd: str | None = None, **env: str) -> subprocess.Popen[bytes]:
        log = self.logs / f"server-{len(self.procs)}.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                args, env={**os.environ, **env}, cwd=cwd, stdout=out, stderr=subprocess.STDOUT
            )
        self.procs.append((proc, log))
        return proc

    def wait_for(self, url: str, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"server exited with {proc.returncode}:\n{self.log(proc)}")
            try:
                with urllib.request.urlopen(url, timeout=2):
                    return
            except (urllib.error.URLError, ConnectionError):
                if time.monotonic() > deadline:
                    raise AssertionError(f"{url} did not answer:\n{self.log(proc)}") from None
                time.sleep(0.1)

    def log(self, proc: subprocess.Popen[bytes]) -> str:
        path = next(log for p, log in self.procs if p is proc)
        return path.read_text(errors="replace")[-3000:]

    def stop_all(self) -> None:
        for proc, _ in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[Servers]:
    servers = Servers(tmp_path)
    try:
        yield servers
    finally:
        servers.stop_all()


def test_every_example_is_tested() -> None:
    tested = {
        "flask_app",
        "fastapi_app",
        "gunicorn_app",
        "gunicorn_conf",
        "django_app",
        "sqlalchemy_app",
        "psycopg2_app",
        "psycopg_pool_app",
        "metrics_app",
    }
    assert {p.stem for p in EXAMPLES.glob("*.py")} == tested


def test_flask(example_env: str) -> None:
    app = load("flask_app").create_app()
    pool = app.extensions["ferropool"]
    try:
        client = app.test_client()
        assert client.get("/double/21").get_json() == {"n": 21, "double": 42}
        created = client.post("/notes", json={"body": "hello"})
        assert created.status_code == 201
        note_id = created.get_json()["id"]
        assert client.get(f"/notes/{note_id}").get_json() == {"id": note_id, "body": "hello"}
        assert client.get("/notes/0").status_code == 404
        health = client.get("/health").get_json()
        assert health["size"] >= 2 and health["waiting"] == 0
        metrics = client.get("/metrics").get_data(as_text=True)
        assert 'ferropool_requests_total{pool="flask"}' in metrics
        # Every connection is back: none leaked by the handlers (the pool may
        # still be opening its second connection in the background).
        wait_until(
            lambda: pool.get_stats()["pool_available"] == pool.get_stats()["pool_size"],
            what="every connection back",
        )
        # All connections busy for `timeout`: the handler answers 503. The
        # pool opens the ones it lacks first, in its own time.
        held = [pool.getconn(timeout=DEADLINE) for _ in range(pool.max_size)]
        pool.timeout = 0.1
        try:
            assert client.get("/double/1").status_code == 503
        finally:
            for conn in held:
                pool.putconn(conn)
    finally:
        pool.close()


def test_fastapi(example_env: str) -> None:
    from fastapi.testclient import TestClient

    module = load("fastapi_app")
    with TestClient(module.app) as client:
        assert client.get("/double/21").json() == {"n": 21, "double": 42}
        for i in range(10):
            assert client.get(f"/double/{i}").json()["double"] == 2 * i
        stats = client.get("/stats").json()
        assert stats["requests_num"] >= 11
        assert stats["pool_max"] == 10
        pool = module.app.state.pool
    assert pool.closed  # the lifespan closed it


def test_gunicorn_two_workers(example_env: str, app_name: str, servers: Servers) -> None:
    port = free_port()
    proc = servers.start(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "-c",
            str(EXAMPLES / "gunicorn_conf.py"),
            "--chdir",
            str(EXAMPLES),
            "--bind",
            f"127.0.0.1:{port}",
            "gunicorn_app:app",
        ],
        # Every connection the workers open carries the test's application_name.
        PGAPPNAME=app_name,
    )
    url = f"http://127.0.0.1:{port}/"
    servers.wait_for(url, proc)
    # Concurrent requests: a sync worker serves one at a time, so both work.
    with ThreadPoolExecutor(8) as ex:
        answers = list(ex.map(lambda _: get_json(url), range(24)))
    workers = {a["worker"] for a in answers}
    assert len(workers) == 2
    assert proc.pid not in workers  # the master opened no connection
    # Each worker's connections are its own: no backend serves two workers.
    backends: dict[int, set[int]] = {}
    for a in answers:
        backends.setdefault(a["backend"], set()).add(a["worker"])
    assert all(len(w) == 1 for w in backends.values())
    assert all(1 <= a["pool_size"] <= 4 for a in answers)
    assert 2 <= count_backends(example_env, app_name) <= 8
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(DEADLINE * 2) == 0, servers.log(proc)
    # worker_exit closed each pool: their connections are gone.
    deadline = time.monotonic() + DEADLINE
    while count_backends(example_env, app_name) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert count_backends(example_env, app_name) == 0


def test_django_runserver(example_env: str, servers: Servers) -> None:
    port = free_port()
    proc = servers.start(
        [
            sys.executable,
            str(EXAMPLES / "django_app.py"),
            "runserver",
            f"127.0.0.1:{port}",
            "--noreload",
        ]
    )
    base = f"http://127.0.0.1:{port}"
    servers.wait_for(f"{base}/stats", proc)
    assert get_json(f"{base}/double/21") == {"n": 21, "double": 42}
    name = f"c{os.getpid()}{time.monotonic_ns()}"
    with ThreadPoolExecutor(6) as ex:
        counts = list(ex.map(lambda _: get_json(f"{base}/bump/{name}")["n"], range(30)))
    # Thirty transactions, each counted once.
    assert sorted(counts) == list(range(1, 31))
    stats = get_json(f"{base}/stats")
    assert stats["requests_num"] >= 32
    assert 2 <= stats["pool_size"] <= 8
    assert stats["returns_bad"] == 0


def test_sqlalchemy(example_env: str) -> None:
    result = load("sqlalchemy_app").main()
    assert result["answer"] == 42
    assert result["notes"] >= 2
    assert result["stats"]["requests_num"] >= 3
    assert result["stats"]["pool_max"] == 8


def test_psycopg2_and_dbapi(example_env: str) -> None:
    module = load("psycopg2_app")
    assert module.with_psycopg2_api(example_env) == 21
    assert module.with_dbapi_pool(example_env) == (42, 1)


def test_psycopg_pool_code(example_env: str) -> None:
    module = load("psycopg_pool_app")
    stats = module.sync_part(example_env)
    # A block, a getconn(), four held, one more that timed out.
    assert stats["requests_num"] == 7
    assert stats["requests_errors"] == 1
    assert asyncio.run(module.async_part(example_env)) == 42


def test_metrics_example(example_env: str, capsys: pytest.CaptureFixture[str]) -> None:
    port = free_port()
    load("metrics_app").main(example_env, port=port, seconds=1.2)
    out = capsys.readouterr().out
    assert "db.client.connection.count" in out  # the console exporter's output
    assert "advice: []" in out


# ---- each example as its guide runs it, with only what the guide installs ----------
#
# A fresh venv holds what the guide's install line names and those packages'
# dependencies, nothing else. Each example runs here, as the guide says to
# run it, in a process that can import only that: the standard library and
# the modules of the distributions the install line pulls in (read from the
# installed packages' metadata). An import of anything else fails as it
# would in the fresh venv, with ModuleNotFoundError.

DOCS = EXAMPLES.parent

# example -> (the doc whose install line it needs, the command it documents
# with "python" left out, the path to ask for once it serves HTTP).
RUNS: dict[str, tuple[str, list[str], str | None]] = {
    "flask_app": ("guides/flask.md",
                  ["-m", "flask", "--app", "flask_app:create_app", "run", "--port", "{port}"],
                  "/double/21"),
    "fastapi_app": ("guides/fastapi.md",
                    ["-m", "uvicorn", "fastapi_app:app", "--port", "{port}"], "/double/21"),
    "gunicorn_app": ("guides/gunicorn.md",
                     ["-m", "gunicorn", "-c", "gunicorn_conf.py", "--bind", "127.0.0.1:{port}",
                      "gunicorn_app:app"], "/"),
    "django_app": ("guides/django.md",
                   ["django_app.py", "runserver", "127.0.0.1:{port}", "--noreload"],
                   "/double/21"),
    "sqlalchemy_app": ("guides/sqlalchemy.md", ["sqlalchemy_app.py"], None),
    "psycopg2_app": ("migrating-from-psycopg2.md", ["psycopg2_app.py"], None),
    "psycopg_pool_app": ("migrating-from-psycopg-pool.md", ["psycopg_pool_app.py"], None),
    "metrics_app": ("metrics.md", ["metrics_app.py"], None),
}  # fmt: skip
# gunicorn_conf.py is run by gunicorn_app's command.
RUN_WITH = {"gunicorn_conf": "gunicorn_app"}

# Run in the example's process before the command: only the allowed
# top-level modules (JSON in FERROPOOL_ALLOWED) and the standard library import.
GUARD = """\
import importlib.abc, importlib.machinery, json, os, runpy, sys, sysconfig
allowed = set(json.loads(os.environ.pop("FERROPOOL_ALLOWED")))
stdlib = {sysconfig.get_paths()[k] for k in ("stdlib", "platstdlib")}
stdlib |= {os.path.join(d, "lib-dynload") for d in stdlib}
def in_stdlib(top):
    return top in sys.stdlib_module_names or (
        importlib.machinery.PathFinder.find_spec(top, sorted(stdlib)) is not None)
class NotInstalled(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        top = name.partition(".")[0]
        if top in allowed or in_stdlib(top):
            return None
        raise ModuleNotFoundError(
            f"No module named {name!r} (not installed by the guide's install line)", name=name)
sys.meta_path.insert(0, NotInstalled())
args = sys.argv[1:]
if args[0] == "-m":
    sys.argv = [args[1], *args[2:]]
    runpy.run_module(args[1], run_name="__main__", alter_sys=True)
else:
    sys.argv = args
    runpy.run_path(args[0], run_name="__main__")
"""


def install_line(doc: str) -> list[str]:
    """The requirements of the ``pip install`` line a doc starts with."""
    text = (DOCS / doc).read_text()
    # The first block after the title is the install line.
    found = re.match(r"# [^\n]+\n+```sh\npip install ([^\n]+)\n```", text)
    assert found, f"{doc} does not start with its install line (```sh pip install ...)"
    return shlex.split(found.group(1))


def closure(requirements: list[str]) -> set[str]:
    """Every distribution those requirements install, by normalized name."""
    found: set[str] = set()
    todo = [Requirement(r) for r in requirements]
    while todo:
        req = todo.pop()
        name = canonicalize_name(req.name)
        extras = set(req.extras)
        key = f"{name}[{','.join(sorted(extras))}]"
        if key in found:
            continue
        found.add(key)
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            pytest.fail(f"{req.name}, named by an install line, is not installed here")
        for line in dist.requires or []:
            dep = Requirement(line)
            if dep.marker is None or any(
                dep.marker.evaluate({"extra": extra}) for extra in [*extras, ""]
            ):
                todo.append(dep)
    return {key.partition("[")[0] for key in found}


def importable(distributions: set[str]) -> set[str]:
    """The top-level modules those distributions provide."""
    modules = {
        module
        for module, dists in importlib.metadata.packages_distributions().items()
        if any(canonicalize_name(d) in distributions for d in dists)
    }
    # An editable install maps no module to ferropool: its one package.
    return modules | ({"ferropool"} if "ferropool" in distributions else set())


def test_every_example_has_a_documented_run() -> None:
    assert set(RUNS) | set(RUN_WITH) == {p.stem for p in EXAMPLES.glob("*.py")}


@pytest.mark.parametrize("example", sorted(RUNS))
def test_example_runs_with_only_what_its_guide_installs(
    example: str, dsn: str, servers: Servers
) -> None:
    doc, command, path = RUNS[example]
    requirements = install_line(doc)
    assert any(canonicalize_name(Requirement(r).name) == "ferropool" for r in requirements)
    # The examples themselves, from their folder, as the guides run them.
    allowed = importable(closure(requirements)) | {p.stem for p in EXAMPLES.glob("*.py")}
    port = free_port()
    args = [a.format(port=port) for a in command]
    env = {
        "FERROPOOL_DSN": dsn,
        "FERROPOOL_ALLOWED": json.dumps(sorted(allowed)),
        "SECONDS": "1",  # metrics_app's run time
        "PORT": str(free_port()),  # metrics_app's Prometheus port
    }
    launch = [sys.executable, "-c", GUARD, *args]
    if path is None:
        done = subprocess.run(
            launch, cwd=EXAMPLES, env={**os.environ, **env}, capture_output=True, text=True,
            timeout=120, check=False,
        )  # fmt: skip
        assert done.returncode == 0, f"{' '.join(args)} ({doc}):\n{done.stderr[-3000:]}"
        return
    proc = servers.start(launch, cwd=str(EXAMPLES), **env)
    servers.wait_for(f"http://127.0.0.1:{port}{path}", proc)
    assert proc.poll() is None
