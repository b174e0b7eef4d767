"""`dtl weights check`: every standard pretrained file the metrics load, where it must be, and whether it is."""

from __future__ import annotations

import argparse
import json

from dtl_foundation.weights import check_all


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="dtl weights", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check", help="list the files with their expected path, status, licence and source")
    check.add_argument("--json", action="store_true", help="print the rows as JSON")
    ns = parser.parse_args(argv)
    rows = check_all()
    if ns.json:
        print(json.dumps(rows, indent=2))
    else:
        for row in rows:
            print(f"{row['name']:<14} {row['status']:<18} {row['path']}")
            print(f"{'':<14} {row['description']}; licence: {row['licence']}")
            if row["status"] != "ok":
                print(f"{'':<14} get it from {row['url']}")
    return 0 if all(r["status"] == "ok" for r in rows) else 1
