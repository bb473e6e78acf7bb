"""Run every bench in turn and print a summary table.

``python -m bench [--only authorize,lifecycle,expiry,audit_query] [--profile] [--no-pg]
[--markdown]``. Each bench prints its own lines as it finishes; a bench that fails is
reported and the others still run. The exit status is 0 even when goals are missed (the
table says which): these are measurements, not tests.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime

from bench import audit_query, authorize, expiry, lifecycle
from bench._common import REPO, Result, fmt, machine, report, summary_table, verdict
from bench._load import tool

BENCHES: dict[str, Callable[..., list[Result]]] = {
    "authorize": authorize.run,
    "lifecycle": lifecycle.run,
    "expiry": expiry.run,
    "audit_query": audit_query.run,
}


def revision() -> str:
    """The commit measured, and whether the tree had local changes (read-only git)."""
    try:
        head = _git("rev-parse", "--short", "HEAD")
        dirty = _git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + (" + uncommitted changes" if dirty else "")


def _git(*args: str) -> str:
    done = subprocess.run(
        ["git", *args], cwd=REPO, capture_output=True, text=True, timeout=10, check=True
    )
    return done.stdout.strip()


def markdown(results: list[Result]) -> str:
    lines = [
        "| bench | metric | figure | baseline | ratio | goal | verdict |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        base = f"{fmt(r.baseline)} {r.unit}" if r.baseline is not None else "-"
        ratio = f"{r.ratio:.3f}x" if r.ratio is not None else "-"
        lines.append(
            f"| {r.bench} | {r.metric} | {fmt(r.value)} {r.unit} | {base} | {ratio} | "
            f"{r.goal} | {verdict(r.met)} |"
        )
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description="Run jitgate's benchmarks.")
    p.add_argument("--only", help="comma-separated: " + ", ".join(BENCHES))
    p.add_argument("--profile", action="store_true", help="also print where the time goes")
    p.add_argument("--no-pg", action="store_true", help="skip the PostgreSQL runs")
    p.add_argument("--markdown", action="store_true", help="also print the table as Markdown")
    args = p.parse_args()
    chosen = args.only.split(",") if args.only else list(BENCHES)
    unknown = set(chosen) - set(BENCHES)
    if unknown:
        p.error(f"unknown bench(es): {', '.join(sorted(unknown))}")

    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    print(f"jitgate benchmarks, {stamp}; {machine()}; revision {revision()}; load: {tool()}")
    results: list[Result] = []
    failed: list[str] = []
    for name in chosen:
        began = time.perf_counter()
        print(f"\n== {name}", flush=True)
        try:
            kwargs = {"profile": args.profile}
            if name in ("expiry", "authorize", "lifecycle"):
                kwargs["pg"] = not args.no_pg
            found = BENCHES[name](**kwargs)
        except Exception:
            traceback.print_exc()
            failed.append(name)
            continue
        report(found)
        print(f"({name}: {time.perf_counter() - began:.0f} s)", flush=True)
        results.extend(found)

    print("\n== summary")
    print(summary_table(results))
    if args.markdown:
        print()
        print(markdown(results))
    if failed:
        print(f"\nfailed to run: {', '.join(failed)}", file=sys.stderr)


if __name__ == "__main__":
    main()
