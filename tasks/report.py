"""DVC stage `report`: docs/results.md from every metrics/<pipeline>.json.

    python -m tasks.report

The figures beside the published ones, the paired comparisons and the
ordering verdicts (recongap.reports.results).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from recongap.files import write_text_atomic
from recongap.reports.results import results_markdown

from .common import run_stage


def main() -> None:
    parser = argparse.ArgumentParser(description="Write docs/results.md from the metrics files.")
    parser.add_argument("--metrics", default="metrics")
    parser.add_argument("--out", default="docs/results.md")
    args = parser.parse_args()
    summaries = [json.loads(p.read_text()) for p in sorted(Path(args.metrics).glob("*.json"))]
    if not summaries:
        print(f"{args.metrics}: no metrics files yet (run `dvc repro`)")
    write_text_atomic(args.out, results_markdown(summaries))


if __name__ == "__main__":
    run_stage(main)
