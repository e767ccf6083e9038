"""The ``attnkit`` command: a thin adapter from subcommands to library functions."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence

from attnkit import __version__

Handler = Callable[[argparse.Namespace], int]


def _cmd_example(args: argparse.Namespace) -> int:
    from attnkit.example import format_worked_example, worked_example

    example = worked_example()
    if args.json:
        print(json.dumps(example.to_json_dict(), indent=2))
    else:
        print(format_worked_example(example))
    return 0


def _add_example(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("example", help="the seed article's worked attention example, done right")
    p.add_argument("--json", action="store_true", help="print JSON (tokens, similarities, weights, output)")
    p.set_defaults(handler=_cmd_example)


def _add_bench(sub: argparse._SubParsersAction) -> None:
    from attnkit.bench import attention as bench_attention

    p = sub.add_parser("bench", help="benchmarks")
    bench_sub = p.add_subparsers(dest="bench_name", required=True)
    pa = bench_sub.add_parser("attention", help="time and memory of every attention variant vs torch SDPA")
    bench_attention.add_arguments(pa)
    pa.set_defaults(handler=bench_attention.main)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="attnkit", description=__doc__)
    parser.add_argument("--version", action="version", version=f"attnkit {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_example(sub)
    _add_bench(sub)
    return parser


class UserError(Exception):
    """Raised by handlers for a mistake the user can fix; printed as one line."""


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    handler: Handler = args.handler
    try:
        return handler(args)
    except (ValueError, FileNotFoundError, UserError) as err:
        if args.verbose:
            raise
        print(f"attnkit {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"attnkit {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
