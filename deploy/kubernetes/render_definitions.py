"""Write engine/definitions.yaml, the ConfigMap holding definitions/*.yaml byte for byte.

    python deploy/kubernetes/render_definitions.py          # rewrite it
    python deploy/kubernetes/render_definitions.py --check  # exit 1 if it is out of date

tests/unit/test_deploy.py fails while the ConfigMap differs from definitions/.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
DEFINITIONS = ROOT / "definitions"
TARGET = HERE / "engine" / "definitions.yaml"
NAME = "saga-definitions"

HEADER = f"""\
# Generated from definitions/*.yaml by deploy/kubernetes/render_definitions.py: do not edit.
# Mounted at /app/definitions in the engine (engine/deployment.yaml).
apiVersion: v1
kind: ConfigMap
metadata:
  name: {NAME}
  labels:
    app.kubernetes.io/name: saga-engine
    app.kubernetes.io/component: definitions
data:
"""


def _block(text: str) -> str:
    """A literal block scalar that loads back to exactly ``text``."""
    chomp = "+" if text.endswith("\n\n") else ("" if text.endswith("\n") else "-")
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    body = "".join(f"    {line}\n" if line else "\n" for line in lines)
    return f"|2{chomp}\n{body}"


def definition_texts(folder: Path = DEFINITIONS) -> dict[str, str]:
    files = sorted(p for p in folder.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())
    return {p.name: p.read_text(encoding="utf-8") for p in files}


def render(folder: Path = DEFINITIONS) -> str:
    texts = definition_texts(folder)
    out = HEADER + "".join(f"  {name}: {_block(text)}" for name, text in texts.items())
    loaded = yaml.safe_load(out)["data"]
    if loaded != texts:  # a file a block scalar cannot carry (e.g. a tab-indented line)
        raise SystemExit("cannot embed the definitions losslessly; check their whitespace")
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="only check; exit 1 if stale")
    args = parser.parse_args(argv)
    text = render()
    current = TARGET.read_text(encoding="utf-8") if TARGET.exists() else None
    if args.check:
        if current != text:
            print(f"{TARGET} is out of date: run {Path(__file__).name}", file=sys.stderr)
            return 1
        return 0
    if current != text:
        TARGET.write_text(text, encoding="utf-8")
        print(f"wrote {TARGET}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
