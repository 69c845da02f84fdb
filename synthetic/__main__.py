"""Command line: python -m synthetic --out DIR --patients N --seed S [--db-url URL]."""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Sequence
from pathlib import Path

from synthetic.generate import generate_all


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Options of the generator; defaults match generate_all."""
    parser = argparse.ArgumentParser(
        prog="python -m synthetic",
        description="Write deterministic, messy synthetic exports of three fictional hospitals "
        "(east_liver CSV, north_chest Excel, south_general HIS + HL7) and _truth/.",
    )
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--patients", type=int, default=200, help="patients per hospital")
    parser.add_argument("--seed", type=int, default=42, help="random seed")
    parser.add_argument(
        "--db-url",
        default=None,
        help="SQLAlchemy URL for south_general's HIS tables (dropped and "
        "recreated); default: an SQLite file in the output folder",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    summary = generate_all(args.out, args.patients, args.seed, args.db_url)
    print(json.dumps(summary, ensure_ascii=False, indent=2, sort_keys=True))


if __name__ == "__main__":
    main()
