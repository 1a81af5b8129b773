"""``python -m ringloom run app.py [args]`` (or ``run -m module [args]``): runs a program
with ``ringloom.monkey.patch_all()`` done before its first import."""

from __future__ import annotations

import os
import runpy
import sys

USAGE = """usage: python -m ringloom run app.py [args ...]
       python -m ringloom run -m module [args ...]

commands:
  run     runs a Python program (a script, or a module as `python -m` does) after
          ringloom.monkey.patch_all(): its threads are virtual threads, and its stock
          locks, queues, events and threading.local work on them
"""


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help", "help"):
        print(USAGE, end="")
        return 0 if args else 2
    if args[0] == "run":
        return run(args[1:])
    if args[0] == "demo":
        print("the demo is not part of the package: run `make demo` (examples/demo.py)")
        return 2
    print(f"unknown command {args[0]!r}\n{USAGE}", end="", file=sys.stderr)
    return 2


def run(args: list[str]) -> int:
    """Patches, then runs the program as the interpreter would run it as ``__main__``."""
    if not args or args[0] in ("-h", "--help"):
        print(USAGE, end="")
        return 0 if args else 2
    if args[0] == "-m" and len(args) < 2:
        print("run -m: a module name is needed\n" + USAGE, end="", file=sys.stderr)
        return 2
    from ringloom import monkey

    monkey.patch_all()
    if args[0] == "-m":
        sys.argv = [args[1], *args[2:]]
        sys.path.insert(0, os.getcwd())
        runpy.run_module(args[1], run_name="__main__", alter_sys=True)
        return 0
    path = args[0]
    if not os.path.exists(path):
        print(f"run: no such file: {path!r}", file=sys.stderr)
        return 2
    sys.argv = list(args)
    sys.path.insert(0, os.path.dirname(os.path.abspath(path)))
    runpy.run_path(path, run_name="__main__")
    return 0


if __name__ == "__main__":
    sys.exit(main())
