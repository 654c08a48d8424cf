"""What keeping each chunk's int16 counts costs a window buffer, and what it saves at a checkpoint.

    .venv/bin/python -m bench.bench_held_counts [--beds 200] [--seconds 40] [--rounds 8] [--out docs/bench]

``--beds`` patients each get ``--seconds`` one-second chunks of PTB-XL 500 Hz records (the repo's
test records, played back to back), encoded and decoded with the stream codec as a worker receives
them (int16 counts, a read-only array per message), fed in the replay's order to one
:class:`~hfrisk.stream.windowing.PatientBuffer` each (10-s windows every 5 s), with every buffer
saved (``to_bytes``) after every fifth second, as the worker's 5-s checkpoints do at real time.

Two variants alternate ``--rounds`` times in this one process, so the machine's drift reaches both:

* ``counts``: the chunks as decoded; the buffers save the held samples as counts (state version 3);
* ``float32``: the same chunks with their counts withheld (``EcgChunk.millivolts_and_counts``
  answers ``None`` for them), so the buffers save float32, as every buffer did before version 3.

Process CPU time, split into feeding and saving; the bytes saved per patient. Written to
``<out>/held-counts.{json,md}``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bench.record import command_line, load_average, machine, save
from hfrisk.core.allocator import keep_freed_memory
from hfrisk.model.readers.dispatch import read_ecg
from hfrisk.stream.messages import EcgChunk, decode_chunk, encode_chunk, wire_samples
from hfrisk.stream.windowing import PatientBuffer

RECORDS = Path(__file__).resolve().parents[1] / "tests" / "data" / "ecg" / "ptbxl" / "records500" / "00000"
T0_US = 1_700_000_000_000_000
WINDOW_S, HOP_S, CHECKPOINT_S = 10.0, 5.0, 5
VARIANTS = ("counts", "float32")


def feed_chunks(beds: int, seconds: int) -> list[EcgChunk]:
    """``beds`` x ``seconds`` decoded one-second chunks, second by second (every bed's chunk of a
    second before the next second's)."""
    wires = [wire_samples(read_ecg(path.with_suffix(""))) for path in sorted(RECORDS.glob("*_hr.hea"))]
    messages = []
    for second in range(seconds):
        for bed in range(beds):
            wire = wires[(bed + second // 10) % len(wires)]
            start = (second % 10) * 500
            chunk = EcgChunk.from_wire(wire, start, start + 500, patient_id=f"bed-{bed}", sequence=second,
                                       acquired_at_us=T0_US + second * 1_000_000)
            messages.append(encode_chunk(chunk))
    return [decode_chunk(message) for message in messages]


@contextmanager
def counts_withheld() -> Iterator[None]:
    """Chunks offer their millivolts without their counts: buffers hold and save float32 only."""
    with_counts = EcgChunk.millivolts_and_counts
    EcgChunk.millivolts_and_counts = lambda chunk: (with_counts(chunk)[0], None)
    try:
        yield
    finally:
        EcgChunk.millivolts_and_counts = with_counts


def one_round(chunks: list[EcgChunk], beds: int) -> dict:
    """Feed every chunk and save every buffer each ``CHECKPOINT_S`` seconds: CPU µs a chunk, bytes a save."""
    buffers = {f"bed-{bed}": PatientBuffer(f"bed-{bed}", WINDOW_S, HOP_S) for bed in range(beds)}
    per_checkpoint = beds * CHECKPOINT_S
    feed_s = save_s = 0.0
    saved_bytes, saves, windows = 0, 0, 0
    for at in range(0, len(chunks), per_checkpoint):
        started = time.process_time()
        for chunk in chunks[at : at + per_checkpoint]:
            windows += len(buffers[chunk.patient_id].feed(chunk))
        saving = time.process_time()
        sizes = [len(buffer.to_bytes()) for buffer in buffers.values()]
        save_s += time.process_time() - saving
        feed_s += saving - started
        saved_bytes += sum(sizes)
        saves += len(sizes)
    return {"feed_us": feed_s / len(chunks) * 1e6, "save_us": save_s / len(chunks) * 1e6,
            "bytes_per_save": saved_bytes / saves, "windows": windows}


def run(args: argparse.Namespace) -> dict:
    keep_freed_memory(256)  # as the worker runs (stream.keep_freed_mb)
    chunks = feed_chunks(args.beds, args.seconds)
    rounds: dict[str, list[dict]] = {variant: [] for variant in VARIANTS}
    for index in range(args.rounds):
        for variant in VARIANTS if index % 2 == 0 else VARIANTS[::-1]:
            if variant == "counts":
                rounds[variant].append(one_round(chunks, args.beds))
            else:
                with counts_withheld():
                    rounds[variant].append(one_round(chunks, args.beds))
            row = rounds[variant][-1]
            print(f"[{index}] {variant:8s} feed {row['feed_us']:.1f} µs/chunk, save {row['save_us']:.1f} µs/chunk, "
                  f"{row['bytes_per_save'] / 1000:.1f} kB a save", flush=True)
    summary = {}
    for variant, rows in rounds.items():
        summary[variant] = {
            key: {"min": round(min(r[key] for r in rows), 2), "median": round(statistics.median(r[key] for r in rows), 2)}
            for key in ("feed_us", "save_us")
        } | {"bytes_per_save": round(statistics.median(r["bytes_per_save"] for r in rows)),
             "windows": rounds[variant][0]["windows"]}
    return {"per_round": rounds, "summary": summary}


def markdown(result: dict) -> str:
    s = result["summary"]
    rows = [
        ("feeding, µs CPU a chunk (min / median)", "feed_us"),
        ("saving every 5 s, µs CPU a chunk (min / median)", "save_us"),
    ]
    lines = [
        "# Held counts: what keeping each chunk's int16 counts costs a window buffer, and what it saves",
        "",
        f"Command: `{result['command']}`  ",
        f"When: {result['when']}; machine: {result['machine']['cpus']} CPUs ({result['machine']['processor']}), "
        f"load average {result['machine']['load_before']} before, {result['machine']['load_after']} after.  ",
        f"Workload: {result['beds']} beds x {result['seconds']} one-second PTB-XL 500 Hz chunks, encoded and decoded "
        f"as a worker receives them, 10-s windows every 5 s, every buffer saved every 5 s; the two variants alternate "
        f"{result['rounds']} times in one process.",
        "",
        "| | counts (state version 3) | float32 (counts withheld) |",
        "| --- | ---: | ---: |",
    ]
    for label, key in rows:
        lines.append(f"| {label} | {s['counts'][key]['min']} / {s['counts'][key]['median']} | "
                     f"{s['float32'][key]['min']} / {s['float32'][key]['median']} |")
    lines += [
        f"| bytes a saved buffer (median) | {s['counts']['bytes_per_save']:,} | {s['float32']['bytes_per_save']:,} |",
        f"| windows cut | {s['counts']['windows']:,} | {s['float32']['windows']:,} |",
        "",
        "Why and how the counts are kept: docs/windowing.md, \"Restarts and the saved state\"; what it did to "
        "Redis at 1,000 beds: docs/bench/stream-tuning.md, \"2026-12-07: checkpoints saved as counts\".",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--beds", type=int, default=200)
    parser.add_argument("--seconds", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--out", type=Path, default=Path("docs/bench"))
    args = parser.parse_args(argv)
    load_before = load_average()
    measured = run(args)
    result = {"command": command_line("bench_held_counts", argv), "when": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
              "machine": machine(load_before), "beds": args.beds, "seconds": args.seconds, "rounds": args.rounds,
              **measured}
    save(args.out, "held-counts", result, markdown(result))
    print(markdown(result))
    return result


if __name__ == "__main__":
    main()
