"""Write a real series as a user would have it: aeon's monthly airline passengers (1949-1960) as a
CSV with a date column, and beside it the same rows as a JSON request for `mlflow models serve`
(POST /invocations). Used by the README's train -> predict -> serve walk-through.

    python scripts/example_series.py passengers.csv      # also writes passengers.json
"""

from __future__ import annotations

import argparse
import json
from importlib.resources import files
from pathlib import Path

import pandas as pd


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("csv", type=Path, help="the CSV to write (the .json goes beside it)")
    path = parser.parse_args().csv
    series = pd.read_csv(Path(str(files("aeon.datasets") / "data" / "Airline" / "Airline.csv")))
    series.to_csv(path, index=False)
    request = {"dataframe_split": json.loads(series.to_json(orient="split", index=False))}
    path.with_suffix(".json").write_text(json.dumps(request))
    print(
        f"Wrote {path} ({len(series)} months, columns {', '.join(series.columns)}) and "
        f"{path.with_suffix('.json')}"
    )


if __name__ == "__main__":
    main()
