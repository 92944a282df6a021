"""`python -m pipeline.ui [--port N]`: the MLflow UI on 127.0.0.1, over the store training uses.

The store is found the way training finds it (`tracking.resolve_tracking_uri`), so the UI shows
the same runs whatever directory it is started from.
"""

from __future__ import annotations

import argparse
import subprocess
import sys

from pipeline.store import sqlite_path
from pipeline.tracking import resolve_tracking_uri


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
    print(f"MLflow UI for {uri}\nopen http://127.0.0.1:{args.port} (Ctrl-C stops it)", flush=True)
    try:
        return subprocess.call(server_command(uri, args.port))
    except KeyboardInterrupt:
        return 0  # the server got the same Ctrl-C and stops on its own


if __name__ == "__main__":
    sys.exit(main())
