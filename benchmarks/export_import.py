"""Export and import benchmark (a script, not a test): ``python benchmarks/export_import.py``.

Writes a synthetic export of N memories (default 100k; ``--count 1000000``),
then, on a fresh file: import (the rate the issue asks ≥ 20k memories/s for),
import again (idempotent: every line unchanged), export, and a backup. Peak
RSS is the process's high-water mark after each phase: flat from 100k to 1M
means the import streams. Prints figures; docs/performance.md records them.

Local semantic recall is off unless ``--semantic``: with the model installed
its EmbeddingActor embeds every imported memory in the background, in this
process, and that CPU and memory would be counted as the import's.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import threading
import time
from pathlib import Path

# The synthetic export is the test suite's fixture.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from export_fixtures import write_synthetic_export

from actors import MemorySystem
from actors.system import Config


def cpu_seconds() -> float:
    """User + system CPU time of this process so far: on a busy host, a fairer measure."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def thread_cpu() -> dict[str, float]:
    """CPU seconds of the caller's thread (parsing) and the StoreActor's (SQLite), Linux only.

    With two cores, the wall time an idle host would take is about the busier
    of the two (they overlap while SQLite runs without the GIL): a rate a
    saturated host cannot show.
    """
    ticks = os.sysconf("SC_CLK_TCK")
    found: dict[str, float] = {}
    for thread in threading.enumerate():
        role = "caller" if thread is threading.main_thread() else thread.name.split("-")[0]
        if role not in ("caller", "StoreActor") or thread.native_id is None:
            continue
        try:
            stat = Path(f"/proc/self/task/{thread.native_id}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        found[role] = found.get(role, 0.0) + (int(fields[11]) + int(fields[12])) / ticks
    return found


def rss_mb() -> float:
    """Peak resident set size of this process so far, in MB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=100_000, help="memories (default 100k)")
    parser.add_argument("--synchronous", default="FULL", choices=["FULL", "NORMAL"])
    parser.add_argument("--dir", help="work directory (default: a temporary one)")
    parser.add_argument(
        "--semantic", action="store_true", help="run local semantic recall (embeds in background)"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as work:
        folder = Path(work)
        dump = folder / "synthetic.jsonl"
        start = time.perf_counter()
        with dump.open("wb") as out:
            write_synthetic_export(out, args.count)
        print(
            f"synthetic export: {args.count:,} memories, {dump.stat().st_size / 1e6:.0f} MB "
            f"in {time.perf_counter() - start:.1f}s; load average {os.getloadavg()[0]:.1f}; "
            f"semantic recall {'on' if args.semantic else 'off'}"
        )
        base = rss_mb()
        config = Config(synchronous=args.synchronous, semantic=args.semantic)
        with MemorySystem.open(folder / "bench.db", config=config) as system:
            for phase in ("import", "re-import"):
                start, cpu, threads = time.perf_counter(), cpu_seconds(), thread_cpu()
                report = system.import_memories(dump)
                seconds, used = time.perf_counter() - start, cpu_seconds() - cpu
                split = ", ".join(
                    f"{role} {spent - threads.get(role, 0.0):.1f}"
                    for role, spent in sorted(thread_cpu().items())
                )
                print(
                    f"{phase:>9}: {args.count / seconds:8,.0f} memories/s "
                    f"({seconds:.1f}s, {used:.1f} CPU-s: {args.count / used:,.0f} per CPU-s; "
                    f"{report.summary()}); peak RSS {rss_mb():.0f} MB (+{rss_mb() - base:.0f}); "
                    f"load {os.getloadavg()[0]:.1f}; CPU-s by thread: {split}"
                )
            start = time.perf_counter()
            exported = system.export_memories(folder / "again.jsonl")
            seconds = time.perf_counter() - start
            print(
                f"   export: {exported.memories / seconds:8,.0f} memories/s ({seconds:.1f}s); "
                f"peak RSS {rss_mb():.0f} MB"
            )
            same = (folder / "again.jsonl").read_bytes().split(b"\n", 1)[1] == (
                dump.read_bytes().split(b"\n", 1)[1]
            )
            print(f"   round trip byte-identical: {same}")
            start = time.perf_counter()
            backup = system.backup(folder / "bench.backup.db")
            print(
                f"   backup: {backup.facts.size_bytes / 1e6:.0f} MB, {backup.pages:,} pages, "
                f"{backup.facts.memories:,} memories, integrity {backup.facts.integrity}, "
                f"{time.perf_counter() - start:.1f}s (copy {backup.seconds:.1f}s incl. check)"
            )


if __name__ == "__main__":
    main()
