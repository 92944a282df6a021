"""`python -m pipeline.ui [--port N]`: the MLflow UI on 127.0.0.1, over the store training uses.

The store is found the way training finds it (`resolve_tracking_uri`), so the UI shows the same
runs from anywhere in the project. The server runs in a session of its own, and this process
stops it (and its workers) on Ctrl-C, SIGTERM or SIGHUP, so no server is left holding the port.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys

from pipeline.tracking.store import resolve_tracking_uri, sqlite_path


def server_command(uri: str, port: int, host: str = "127.0.0.1") -> list[str]:
    """The `mlflow server` command line serving the store at `uri`, artifacts included."""
    command = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", uri]
    command += ["--host", host, "--port", str(port)]
    # One worker: a local UI has one user, and every worker is a full MLflow process.
    command += ["--workers", "1"]
    db = sqlite_path(uri)
    if db is not None:
        # Runs keep their own artifact locations (mlruns/artifacts/<experiment>); this only
        # decides where artifacts of experiments created from the UI go: beside the store,
        # not in a `mlartifacts/` folder under whatever directory the UI was started from.
        artifacts = db.parent / "artifacts"
        command += ["--artifacts-destination", artifacts.as_uri()]
    return command


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline.ui", description="Browse this project's MLflow runs."
    )
    parser.add_argument("--port", type=int, default=5000, help="port to listen on (default 5000)")
    parser.add_argument(
        "--uri", default=None, help="tracking URI; default: $MLFLOW_TRACKING_URI, else ./mlruns"
    )
    args = parser.parse_args(argv)
    uri = resolve_tracking_uri(args.uri)
    if uri.startswith(("http://", "https://")):
        print(f"The tracking store {uri} is already an MLflow server: open it in a browser.")
        return 0
    db = sqlite_path(uri)
    if db is None or db.exists():  # never create a store just to look at it
        from pipeline.tracking.runs import mark_dead_runs

        mark_dead_runs(uri)
    print(f"MLflow UI for {uri}\nopen http://127.0.0.1:{args.port} (Ctrl-C stops it)", flush=True)
    return serve(server_command(uri, args.port))


def serve(command: list[str]) -> int:
    """Run the server until it exits or this process is told to stop; then stop its whole
    process group (`mlflow server` starts workers of its own) and wait for it."""
    server = subprocess.Popen(command, start_new_session=True)

    def stop(signum, frame):
        raise KeyboardInterrupt

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, stop)
    try:
        return server.wait()
    except KeyboardInterrupt:
        _stop_group(server)
        return 0


def _stop_group(server: subprocess.Popen, timeout: float = 15.0) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(server.pid, sig)
        except ProcessLookupError:
            return
        try:
            server.wait(timeout)
            return
        except subprocess.TimeoutExpired:
            continue


if __name__ == "__main__":
    sys.exit(main())
