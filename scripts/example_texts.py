"""Write labelled texts as a user would have them: a CSV with a `review` column and a
`sentiment` column (pos or neg), synthetic reviews with IMDB's length distribution (the same
generator as scripts/bench_text.py; IMDB itself needs a download). Used by the README's text
example.

    python scripts/example_texts.py reviews.csv            # 2,000 reviews
    python scripts/example_texts.py reviews.csv --reviews 8000
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_text import imdb_like_reviews  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("csv", type=Path, help="the CSV to write")
    parser.add_argument("--reviews", type=int, default=2000, help="how many (default 2000)")
    args = parser.parse_args()
    imdb_like_reviews(args.csv, args.reviews, columns=("review", "sentiment"))
    print(f"Wrote {args.csv} ({args.reviews} reviews, columns review, sentiment)")


if __name__ == "__main__":
    main()
