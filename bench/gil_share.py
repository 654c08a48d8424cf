"""Where one thread of a process spends its wall time, and how much of it with the GIL: two
``py-spy record --threads --format raw`` profiles of the same run, one with ``--idle`` (every
sample) and one with ``--gil`` (only the thread holding the GIL), summed per function.

A function whose wall seconds are far above its GIL-held seconds ran without the GIL: in C code
that released it (a numpy loop over more than 500 elements, a socket call) or waiting to take it
back from another thread. That is how the no-op worker's numpy calls on each chunk were found
(docs/bench/stream-tuning.md, "2026-12-06, late: numpy calls and the GIL").

Usage (py-spy is not a dependency: ``pip install py-spy`` in any environment)::

    py-spy record --pid PID --idle --threads --rate 400 --duration 15 --format raw -o idle.txt
    py-spy record --pid PID --gil --threads --rate 400 --duration 15 --format raw -o gil.txt
    python -m bench.gil_share idle.txt gil.txt --rate 400 --thread MainThread
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

__all__ = ["function_seconds", "share_table"]


def function_seconds(path: Path, thread: str, rate_hz: float) -> tuple[float, Counter]:
    """Seconds of ``thread``'s samples in a py-spy raw profile, in all and per function (inclusive:
    a function counts once per sample whatever its depth). Functions are named without their file."""
    total, per_function = 0, Counter()
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        if not frames[0].endswith(f": {thread}") and not frames[0].endswith(f" {thread}"):
            continue
        n = int(count)
        total += n
        for name in {frame.split(" (")[0] for frame in frames[1:]}:
            per_function[name] += n
    return total / rate_hz, Counter({k: v / rate_hz for k, v in per_function.items()})


def share_table(idle: Path, gil: Path, thread: str, rate_hz: float, top: int = 25) -> str:
    """A Markdown table: the functions of ``thread`` with the most wall seconds, each with its
    wall seconds, its GIL-held seconds and the difference (time without the GIL). Functions in
    nine tenths of the samples or more (the thread's entry point, the event loop) are left out."""
    wall_total, wall = function_seconds(idle, thread, rate_hz)
    gil_total, held = function_seconds(gil, thread, rate_hz)
    wall = Counter({name: s for name, s in wall.items() if s < 0.9 * wall_total})
    lines = [
        f"{thread}: {wall_total:.2f} s sampled, {gil_total:.2f} s of them holding the GIL",
        "",
        "| function (inclusive) | wall s | GIL held s | without the GIL s |",
        "| --- | ---: | ---: | ---: |",
    ]
    for name, seconds in wall.most_common(top):
        lines.append(f"| {name} | {seconds:.2f} | {held.get(name, 0.0):.2f} | {seconds - held.get(name, 0.0):.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("idle", type=Path, help="py-spy raw profile recorded with --idle --threads")
    parser.add_argument("gil", type=Path, help="py-spy raw profile recorded with --gil --threads")
    parser.add_argument("--rate", type=float, default=100.0, help="the --rate both were recorded at")
    parser.add_argument("--thread", default="MainThread")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args(argv)
    print(share_table(args.idle, args.gil, args.thread, args.rate, args.top))


if __name__ == "__main__":
    main()
