"""Export benchmark: freezing a dataset version over 1M judgments.

Fills a database of its own (under data/bench-export/, kept between runs) with G=4 groups,
one judge judgment per completion, two criteria per rubric, then exports the offline GRPO
format two ways, each in a fresh child process so peak memory is its own:

- streaming: `labelling.datasets.services.dataset_build` as the app runs it (chunked reads,
  rows written and hashed as they are made);
- baseline: load everything (every group with its completions, judgments and scores as
  ORM objects, Django's prefetch_related), build every row in memory, then dump the file.

It prints judgments/s and output rows/s, peak RSS, and the ratio of the two, and checks
that both files are the same bytes. Usage:

    python bench/bench_export.py [--judgments 1000000] [--skip-baseline]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fill  # noqa: E402


def peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def child(method: str, out: Path) -> None:
    """One export in this process; prints a JSON line with its measurements."""
    from labelling.datasets import filters, formats, rewards, storage
    from labelling.datasets import services as dataset_services
    from labelling.models import DatasetVersion, Group, Judgment

    total = Judgment.objects.count()
    started = time.perf_counter()
    if method == "streaming":
        version = dataset_services.dataset_build(dataset="bench", kind="grpo", filter={"rubric": "bench"})
        path, rows, sha = storage.dataset_path(version), version.row_count, version.sha256
        elapsed = time.perf_counter() - started
        os.replace(path, out)
        DatasetVersion.objects.filter(pk=version.pk).delete()
    else:
        f = filters.DatasetFilter.from_dict({"rubric": "bench"})
        rubric = filters.rubric_for(f)
        criteria = list(rubric.criteria.all())
        # Every group, completion, judgment and score of the version as ORM objects, all held
        # at once (read 10,000 groups per query batch: SQLite caps a query's parameters).
        ids = list(filters.groups_for(f).values_list("id", flat=True))
        groups = []
        for start in range(0, len(ids), 10_000):
            groups += list(
                Group.objects.filter(id__in=ids[start : start + 10_000])
                .order_by("id")
                .select_related("character", "prompt")
                .prefetch_related("generations__judgments__scores__criterion")
            )
        scored = []
        for group in groups:
            gens = sorted(group.generations.all(), key=lambda g: (g.index, g.revision))
            by_generation = {
                g.pk: [
                    (
                        j.source,
                        j.flagged,
                        {s.criterion.key: s.score for s in sorted(j.scores.all(), key=lambda s: s.criterion.key)},
                    )
                    for j in sorted(g.judgments.all(), key=lambda j: j.pk)
                    if j.status == "ok" and j.rubric_id == rubric.pk
                ]
                for g in gens
            }
            completions = rewards.score_group(
                [
                    rewards.Gen(
                        g.pk,
                        g.group_id,
                        g.index,
                        g.revision,
                        g.parent_id,
                        g.source,
                        g.messages,
                        g.text,
                        g.raw_text,
                        g.think_valid,
                    )
                    for g in gens
                ],
                by_generation,
                criteria,
            )
            scored.append((rewards.GroupRow(group.pk, group.character, group.prompt.messages), completions))
        everything = list(formats.rows_for("grpo", f, rubric, groups=scored))
        data = b"".join(storage._encode(row) for row in everything)
        out.write_bytes(data)
        rows, sha = len(everything), hashlib.sha256(data).hexdigest()
        elapsed = time.perf_counter() - started
    print(
        json.dumps(
            {
                "method": method,
                "judgments": total,
                "rows": rows,
                "seconds": elapsed,
                "peak_rss_mb": peak_rss_mb(),
                "sha256": sha,
            }
        ),
        flush=True,
    )


def run_child(method: str, data_dir: Path) -> dict:
    out = data_dir / f"export-{method}.jsonl"
    return fill.child_json(
        [sys.executable, __file__, "--child", method, "--data-dir", str(data_dir), "--out", str(out)],
        f"{method} export",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--judgments", type=int, default=1_000_000)
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--skip-baseline", action="store_true")
    parser.add_argument("--child", choices=["streaming", "baseline"])
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    data_dir = args.data_dir or fill.ROOT / "data" / f"bench-export-{args.judgments}"
    fill.setup(data_dir, fresh=not args.child and not fill.filled(data_dir))
    if args.child:
        child(args.child, args.out)
        return
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    if not fill.filled(data_dir):
        print(f"filling: {args.judgments // fill.GROUP_SIZE:,} groups of {fill.GROUP_SIZE}, one judgment each")
        fill.fill(args.judgments // fill.GROUP_SIZE)
        fill.mark_filled(data_dir)
    results = [run_child("streaming", data_dir)]
    if not args.skip_baseline:
        results.append(run_child("baseline", data_dir))
    print(
        f"\nexport of a GRPO version over {results[0]['judgments']:,} judgments ({results[0]['rows']:,} group rows)\n"
    )
    print(f"{'method':<10} {'seconds':>8} {'judgments/s':>12} {'rows/s':>9} {'peak RSS MB':>12}")
    for r in results:
        print(
            f"{r['method']:<10} {r['seconds']:>8.1f} {r['judgments'] / r['seconds']:>12,.0f} "
            f"{r['rows'] / r['seconds']:>9,.0f} {r['peak_rss_mb']:>12,.0f}"
        )
    if len(results) == 2:
        s, b = results
        print(
            f"\nstreaming / baseline: speed {b['seconds'] / s['seconds']:.2f}x, "
            f"peak memory {s['peak_rss_mb'] / b['peak_rss_mb']:.2f}x; "
            f"same bytes: {s['sha256'] == b['sha256']}"
        )


if __name__ == "__main__":
    main()
