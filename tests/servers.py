"""Real, throwaway servers for the tests that need one: PostgreSQL (initdb into a temp folder) and
`mlflow server`, each on a free port of 127.0.0.1, stoppable and restartable on the same port so
tests can take them away mid-run the way a crash or a maintenance window does."""

from __future__ import annotations

import functools
import itertools
import os
import pwd
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from glob import glob
from pathlib import Path

import pytest
from conftest import child_env, free_port


def wait_until_serving(
    base: str, proc: subprocess.Popen, timeout: float = 240, path: str = "/health"
) -> None:
    """Wait until the server at `base` answers `path` with HTTP 200 (an MLflow tracking server's
    /health, a model server's /ping); fail if `proc` exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the server exited with status {proc.returncode}")
        try:
            with urllib.request.urlopen(f"{base}{path}", timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.25)
    raise AssertionError(f"the server did not answer at {base} within {timeout} s")


def pg_binary(name: str) -> str | None:
    """A PostgreSQL program from PATH, else from Debian's /usr/lib/postgresql/<version>/bin."""
    versions = glob(f"/usr/lib/postgresql/*/bin/{name}")
    newest = max(versions, key=lambda p: [int(n) for n in re.findall(r"\d+", p)], default=None)
    return shutil.which(name) or newest


def server_account() -> pwd.struct_passwd | None:
    """Who runs the server: us, or an unprivileged account when we are root (initdb, pg_ctl and
    postgres all refuse to run as root)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    pytest.skip("running as root with no `postgres` or `nobody` account to run PostgreSQL as")


def run_as(account, *args, cwd: Path) -> None:
    """Run a PostgreSQL program as `account` (None: as us); its output in the error if it fails."""
    as_user = {}
    if account is not None:  # subprocess switches user in the child: no su or runuser needed
        as_user = dict(user=account.pw_uid, group=account.pw_gid, extra_groups=[])
    result = subprocess.run(
        [str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=120, **as_user
    )
    if result.returncode != 0:
        log = cwd / "server.log"
        tail = log.read_text()[-2000:] if log.exists() else ""
        raise RuntimeError(f"{args[0]} failed:\n{result.stdout}\n{result.stderr}\n{tail}")


class Postgres:
    """A PostgreSQL server in a temp folder; `url` has no database, e.g.
    postgresql://postgres@127.0.0.1:PORT. `stop()` is a crash (immediate shutdown)."""

    _numbers = itertools.count()

    def __init__(self):
        initdb, self.pg_ctl = pg_binary("initdb"), pg_binary("pg_ctl")
        if not (initdb and self.pg_ctl):
            pytest.skip(
                "no PostgreSQL binaries (initdb, pg_ctl) on PATH or in /usr/lib/postgresql/*/bin; "
                "install them with `apt-get install postgresql`"
            )
        account = server_account()
        # Not pytest's tmp_path: that is private to the user running pytest, maybe not the server's.
        self.root = Path(tempfile.mkdtemp(prefix="pg-test-"))
        if account is not None:
            os.chown(self.root, account.pw_uid, account.pw_gid)
        self.data, self.port = self.root / "data", free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}"
        self.run = functools.partial(run_as, account, cwd=self.root)
        self.run(
            initdb, "-D", self.data, "-U", "postgres", "--auth=trust", "--no-locale", "-E", "UTF8"
        )

    def start(self) -> None:
        # No fsync: the data lives for one test session. Commits stay synchronous, so a crash
        # (`stop`) loses nothing the server had acknowledged, as on a production server.
        settings = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        settings += " -c full_page_writes=off"
        self.run(
            self.pg_ctl,
            "-D",
            self.data,
            "-l",
            self.root / "server.log",
            "-w",
            "-o",
            settings,
            "start",
        )

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self.run(self.pg_ctl, "-D", self.data, "-m", "immediate", "-w", "stop")

    def new_database(self) -> str:
        """A database without a single table; returns its URL."""
        import psycopg

        name = f"cold_{next(self._numbers)}"
        with psycopg.connect(f"{self.url}/postgres", autocommit=True) as admin:
            admin.execute(f"CREATE DATABASE {name}")
        return f"{self.url}/{name}"

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


class MlflowServer:
    """`mlflow server` over `backend` (a database URL), artifacts in `root/artifacts`, served
    through the server (`--artifacts-destination`) as a shared server is. `stop()` kills its
    whole process group, as a crash would; `start()` brings it back on the same port."""

    def __init__(self, backend: str, root: Path):
        self.backend, self.root, self.port = backend, root, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 240) -> None:
        command = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", self.backend]
        command += ["--artifacts-destination", (self.root / "artifacts").as_uri()]
        command += ["--host", "127.0.0.1", "--port", str(self.port), "--workers", "1"]
        with open(self.root / "mlflow-server.log", "a") as log:
            self.proc = subprocess.Popen(
                command,
                cwd=self.root,
                env=child_env(),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its workers stop with it
            )
        try:
            wait_until_serving(self.url, self.proc, timeout)
        except AssertionError as exc:
            log = (self.root / "mlflow-server.log").read_text()[-3000:]
            raise AssertionError(f"{exc}:\n{log}") from None

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=30)
