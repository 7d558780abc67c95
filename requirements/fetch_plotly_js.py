"""Fetch plotly.js for the leadership pages at install time (``make install`` runs this).

The pages draw their charts with plotly.js, served by the app from ``api/static/vendor/`` (no CDN).
The file is not kept in the repository and the plotly Python package is not installed: the pinned
plotly wheel is downloaded from the package registry (or read from a wheel given with ``--wheel``,
for a machine without one), both the wheel and the bundle are checked against the pinned sha256,
and the bundle and its licence are written into the ignored folder. A later run with the right file
in place does nothing.

To move to another plotly.js: change the four pins below (the sha256 of the wheel as the registry
lists it, and of ``plotly/package_data/plotly.min.js`` inside it), run this script, and run
tests/test_security_headers.py and tests/test_browser.py (plotly's injected style ids may change).

Usage: python requirements/fetch_plotly_js.py [--wheel PATH] [--dest DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

PLOTLY = "7.1.0"  # the plotly (Python) release whose wheel carries the bundle
WHEEL_SHA256 = "dbb7fa18afce40d0a8e80d1bf162eceb3faa0ce5a77fe741ad09a74cf78f53f3"
JS_VERSION = "4.1.1"
JS_SHA256 = "3b6e15d45dbb7fca5bd2094291e961ddc5472cd887009e6009a56dab668d721f"

MEMBER = "plotly/package_data/plotly.min.js"
LICENSE_SUFFIX = "/licenses/LICENSE.txt"
DEST = Path(__file__).resolve().parent.parent / "api" / "static" / "vendor"


def sha256(data: bytes) -> str:
    """Hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def up_to_date(dest: Path) -> bool:
    """True when ``dest`` already holds the pinned bundle."""
    try:
        return sha256((dest / "plotly.min.js").read_bytes()) == JS_SHA256
    except OSError:
        return False


def download(tmp: Path) -> Path:
    """The pinned plotly wheel, downloaded by pip with its hash required; returns its path."""
    req = tmp / "plotly.txt"
    req.write_text(f"plotly=={PLOTLY} --hash=sha256:{WHEEL_SHA256}\n")
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:"]
    subprocess.run([*cmd, "--require-hashes", "-r", str(req), "-d", str(tmp)], check=True)
    return next(tmp.glob(f"plotly-{PLOTLY}-*.whl"))


def extract(wheel: Path, dest: Path) -> None:
    """Check ``wheel`` and its bundle against the pins and write the bundle, its licence and a note."""
    if sha256(wheel.read_bytes()) != WHEEL_SHA256:
        raise ValueError(f"{wheel} is not the pinned plotly {PLOTLY} wheel (sha256 differs)")
    with zipfile.ZipFile(wheel) as zf:
        js = zf.read(MEMBER)
        licence = next((zf.read(n) for n in zf.namelist() if n.endswith(LICENSE_SUFFIX)), b"")
    if sha256(js) != JS_SHA256 or f"plotly.js v{JS_VERSION}".encode() not in js[:200]:
        raise ValueError(f"{MEMBER} in {wheel.name} is not plotly.js {JS_VERSION} with the pinned sha256")
    dest.mkdir(parents=True, exist_ok=True)
    note = {"plotly.js": JS_VERSION, "sha256": JS_SHA256, "from": f"{wheel.name} ({MEMBER})"}
    for name, data in (
        ("LICENSE-plotly.txt", licence),
        ("plotly.json", (json.dumps(note, indent=1) + "\n").encode()),
        ("plotly.min.js", js),  # last: its presence means the folder is complete
    ):
        part = dest / f".{name}.part"
        part.write_bytes(data)
        os.replace(part, dest / name)


def main(argv: list[str] | None = None) -> int:
    """Fetch (or reuse) the bundle; 0 when the pinned file is in place, 1 with a message otherwise."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--wheel", type=Path, help=f"a downloaded plotly-{PLOTLY}-py3-none-any.whl (offline)")
    parser.add_argument("--dest", type=Path, default=DEST, help="where the app serves it from (default: %(default)s)")
    args = parser.parse_args(argv)
    if up_to_date(args.dest):
        print(f"plotly.js {JS_VERSION} already in {args.dest}")
        return 0
    try:
        with tempfile.TemporaryDirectory() as tmp:
            extract(args.wheel or download(Path(tmp)), args.dest)
    except (OSError, ValueError, StopIteration, KeyError, subprocess.CalledProcessError) as exc:
        print(
            f"error: could not fetch plotly.js {JS_VERSION}: {exc}\n"
            f"Without a package registry: download plotly-{PLOTLY}-py3-none-any.whl elsewhere "
            f"(pip download plotly=={PLOTLY} --no-deps) and run: python requirements/fetch_plotly_js.py --wheel PATH",
            file=sys.stderr,
        )
        return 1
    print(f"plotly.js {JS_VERSION} written to {args.dest} (sha256 verified)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
