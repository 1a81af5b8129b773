"""``python -m ringloom demo [options]``: the main job (see ``ringloom.demo``)."""

from __future__ import annotations

import sys

USAGE = """usage: python -m ringloom demo [--requests N] [--concurrency N] [--files N] [--quick]

commands:
  demo    unmodified `requests` from 10,000 virtual threads against a loopback HTTP
          server, then a batch of files read with open() and hashed in virtual threads;
          every response and hash is verified (`python -m ringloom demo --help`)
"""


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help", "help"):
        print(USAGE, end="")
        return 0 if args else 2
    if args[0] == "demo":
        from ringloom.demo import main as demo_main

        return demo_main(args[1:])
    print(f"unknown command {args[0]!r}\n{USAGE}", end="", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
