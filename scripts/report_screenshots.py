#!/usr/bin/env python3
"""Regenerate docs/img: screenshots of the artifact report (cortex-m4, rpi4, host) and of a sweep page.

Why a script: the README points at these images, and they go stale whenever a template changes; this rebuilds
them from real, small artifacts (compile, bench, report, sweep through the CLI) and headless Chromium, so
anyone can redo them in a few minutes.  Usage: ``python3 scripts/report_screenshots.py [--work DIR] [--out DIR]``.
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COMMON = ["--eval-size", "40", "--calib-size", "32"]
# name -> compile flags; small models so the whole script takes minutes (cortex-m4 and rpi4 run under qemu)
ARTIFACTS = {
    "cortex-m4": ["--target", "cortex-m4", "--alpha", "0.25", "--resolution", "96"],
    "rpi4": ["--target", "rpi4", "--alpha", "0.25", "--resolution", "64"],
    "host": ["--target", "host", "--alpha", "0.25", "--resolution", "64"],
}
SWEEP = ["--target", "host", "--alpha", "0.5,0.25", "--resolution", "64,32", "--jobs", "1", *COMMON]
WINDOW = "1280,2400"


def cli(*argv) -> None:
    """One edgepack command as its own process; stops the script with its stderr when it fails."""
    start = time.monotonic()
    p = subprocess.run([sys.executable, "-m", "edgepack.cli.main", *map(str, argv)], capture_output=True, text=True)
    print(f"  edgepack {' '.join(map(str, argv))}: exit {p.returncode}, {time.monotonic() - start:.0f} s", flush=True)
    if p.returncode != 0:
        sys.exit(f"edgepack {argv[0]} failed:\n{p.stderr}")


def screenshot(page: Path, png: Path, window: str = WINDOW) -> None:
    """Headless Chromium's picture of one page, with a throwaway profile (no first-run or network noise)."""
    profile = tempfile.mkdtemp()
    try:
        p = subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                            "--disable-background-networking", "--disable-component-update", "--disable-sync",
                            f"--user-data-dir={profile}", "--hide-scrollbars", f"--window-size={window}",
                            "--virtual-time-budget=5000", f"--screenshot={png}", f"file://{page}"],
                           capture_output=True, text=True, timeout=180)
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    if p.returncode != 0 or not png.is_file():
        sys.exit(f"chromium could not screenshot {page}:\n{p.stderr[-2000:]}")
    print(f"  {png}: {png.stat().st_size / 1024:.0f} KiB", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, help="folder for the artifacts (default: a temporary one, removed)")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "img", help="where the PNGs go (default docs/img)")
    ap.add_argument("--only", help="comma-separated subset of cortex-m4,rpi4,host,sweep")
    args = ap.parse_args()
    if shutil.which("chromium") is None:
        sys.exit("chromium not found: run scripts/setup.sh (it installs headless Chromium)")
    work = args.work or Path(tempfile.mkdtemp(prefix="edgepack-shots-"))
    args.out.mkdir(parents=True, exist_ok=True)
    only = set(args.only.split(",")) if args.only else set(ARTIFACTS) | {"sweep"}
    for name, flags in ARTIFACTS.items():
        if name not in only:
            continue
        art, page = work / name, work / f"{name}.html"
        print(f"{name}:", flush=True)
        if not (art / "manifest.json").is_file():
            cli("compile", *flags, *COMMON, "-o", art)
        cli("bench", art, "--eval-size", "40", "--count", "5")
        cli("report", art, "-o", page)
        screenshot(page, args.out / f"report-{name}.png")
    if "sweep" in only:
        print("sweep:", flush=True)
        if not (work / "sweep" / "sweep.html").is_file():
            cli("sweep", *SWEEP, "-o", work / "sweep")
        cli("report", work / "sweep", "-o", work / "sweep.html")  # the same page as sweep.html, from today's templates
        screenshot(work / "sweep.html", args.out / "sweep.png", window="1280,1300")  # a shorter page
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
