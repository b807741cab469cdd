"""`benchmarks/sweep_speed.py`'s figures as rows and tables: whole sweeps against their
arithmetic floor, the launchers' wall-time ratios, and stacked training per member, each
ratio beside the issue's target (met / NO), never asserted.

A ratio is the median over rounds of the ratio within a round (both sides measured back to
back, under the same load), with its range over rounds; times are medians over rounds.
"""

from __future__ import annotations

import statistics

from nnbench.bench.sweep_runs import LAUNCHER_LABELS

# (grid jobs, tracking, ratio label) -> target; the issue's, for the wall time of a sweep
SWEEP_TARGETS = {
    (24, "tracked", "stacked/basic"): 0.25,
    (24, "untracked", "stacked/basic"): 0.20,
    (24, "tracked", "stacked/joblib"): 0.50,
    (24, "untracked", "stacked/joblib"): 0.50,
    (96, "tracked", "stacked/basic"): 0.15,
}
# (members, ratio label) -> target; training only, B = 64
TRAINING_TARGETS = {(32, "stack/floor"): 1.15, (32, "stack/torch.func"): 0.80}
SWEEP_RATIOS = (("stacked", "basic"), ("stacked", "joblib"))
TRAINING_RATIOS = (("stack", "floor"), ("stack", "solo"), ("stack", "torch.func"))


def paired(tops: list, bottoms: list) -> dict | None:
    """Median, min and max over rounds of top / bottom (None without a pair)."""
    pairs = [a / b for a, b in zip(tops, bottoms, strict=False)]
    if not pairs:
        return None
    return {"ratio": statistics.median(pairs), "low": min(pairs), "high": max(pairs)}


def verdict(value: float, target: float | None) -> str:
    if target is None:
        return ""
    return f"(target <={target:.2f}: {'met' if value <= target else 'NOT met'})"


# ------------------------------------------------------------------------ whole sweeps
def sweep_rows(grid: str, jobs: int, entries, floor_s: float | None) -> list[dict]:
    """One row per variant that has samples: its median wall time and its multiple of the
    sweep's arithmetic floor (``floor_s``: training FLOPs at the machine's peak rate)."""
    rows = []
    for e in entries:
        if not e.seconds:
            continue
        median = statistics.median(e.seconds)
        rows.append(
            {
                "grid": grid,
                "jobs": jobs,
                "tracking": e.tracking,
                "launcher": e.launcher,
                "median_s": median,
                "min_s": min(e.seconds),
                "max_s": max(e.seconds),
                "rounds": len(e.seconds),
                "over_floor": median / floor_s if floor_s else None,
            }
        )
    return rows


def sweep_ratios(grid: str, jobs: int, entries) -> list[dict]:
    """stacked/basic and stacked/joblib for each tracking mode, where both sides ran."""
    by_key = {(e.tracking, e.launcher): e.seconds for e in entries if e.seconds}
    out = []
    for tracking in dict.fromkeys(e.tracking for e in entries):
        for top, bottom in SWEEP_RATIOS:
            value = paired(by_key.get((tracking, top), []), by_key.get((tracking, bottom), []))
            if value is None:
                continue
            label = f"{top}/{bottom}"
            target = SWEEP_TARGETS.get((jobs, tracking, label))
            out.append(
                {
                    "grid": grid,
                    "jobs": jobs,
                    "tracking": tracking,
                    "label": label,
                    "target": target,
                    **value,
                }
            )
    return out


def sweep_lines(grid: str, rows: list, ratios: list, floor: dict | None, failed: dict) -> list:
    """The table of one grid: variants, then ratios, then the variants that did not run."""
    lines = [f"{grid}: wall time of the whole command (median over rounds [min-max])"]
    if floor:
        lines.append(
            f"  arithmetic floor: {floor['gflop']:.1f} GFLOP of training at the measured peak "
            f"{floor['peak_gflops']:.0f} GFLOP/s = {floor['floor_s']:.3f} s"
        )
    head = f"  {'tracking':<10} {'launcher':<16} {'median s':>9} {'[min-max]':>15} {'x floor':>8}"
    lines += [head, "  " + "-" * (len(head) - 2)]
    for row in rows:
        spread = f"[{row['min_s']:.2f}-{row['max_s']:.2f}]"
        over = f"{row['over_floor']:.0f}x" if row["over_floor"] else "-"
        launcher = LAUNCHER_LABELS[row["launcher"]]
        lines.append(
            f"  {row['tracking']:<10} {launcher:<16} {row['median_s']:>9.2f} {spread:>15} {over:>8}"
        )
    if ratios:
        lines.append(
            "  ratios of wall times (median over rounds of the per-round ratio [min-max]):"
        )
    for r in ratios:
        spread = f"[{r['low']:.2f}-{r['high']:.2f}]"
        text = f"    {r['tracking']:<10} {r['label']:<15} {r['ratio']:>6.2f} {spread:>12}  "
        lines.append((text + verdict(r["ratio"], r["target"])).rstrip())
    for label, why in failed.items():
        lines.append(f"  {label}: not measured: {why}")
    return lines


# ------------------------------------------------------------------------ training only
def training_row(optimizer: str, members: int, rounds: dict) -> dict:
    """Per-member step times (us) and paired ratios of one (optimizer, M) cell; ``rounds``:
    label -> [ms of one step per round] (stack, floor, torch.func: all M members; solo:
    one model)."""
    per_member = {"solo": 1, "stack": members, "floor": members, "torch.func": members}
    times = {
        label: statistics.median(values) * 1e3 / per_member[label]
        for label, values in rounds.items()
        if values
    }
    ratios = []
    for top, bottom in TRAINING_RATIOS:
        scale = per_member[bottom] / per_member[top]  # per member on both sides
        tops = [t * scale for t in rounds.get(top, [])]
        value = paired(tops, rounds.get(bottom, []))
        if value is not None:
            label = f"{top}/{bottom}"
            ratios.append(
                {"label": label, "target": TRAINING_TARGETS.get((members, label)), **value}
            )
    return {"optimizer": optimizer, "members": members, "us": times, "ratios": ratios}


def training_lines(rows: list, setup: str, notes: dict) -> list[str]:
    labels = ("stack", "floor", "solo", "torch.func")
    lines = [f"Training only, per-member step time in us (median over rounds); {setup}"]
    head = f"  {'opt':<9} {'M':>4} " + " ".join(f"{label:>10}" for label in labels)
    lines += [head, "  " + "-" * (len(head) - 2)]
    for row in rows:
        cells = [f"{row['us'][x]:>10.2f}" if x in row["us"] else f"{'-':>10}" for x in labels]
        lines.append(f"  {row['optimizer']:<9} {row['members']:>4} " + " ".join(cells))
    lines.append("  ratios, per member (median over rounds [min-max]):")
    for row in rows:
        parts = [
            f"{r['label']} {r['ratio']:.2f} [{r['low']:.2f}-{r['high']:.2f}]"
            + (" " + verdict(r["ratio"], r["target"]) if r["target"] else "")
            for r in row["ratios"]
        ]
        text = "; ".join(parts) or "- (no pair measured)"
        lines.append(f"    {row['optimizer']:<9} M={row['members']:<4} {text}")
    for label, why in notes.items():
        lines.append(f"  {label}: not measured: {why}")
    return lines


# ------------------------------------------------------------------------ targets
def targets_met(ratios: list) -> tuple[int, int]:
    """(met, total) over every ratio that has a target."""
    checked = [r for r in ratios if r.get("target") is not None]
    return sum(r["ratio"] <= r["target"] for r in checked), len(checked)


def all_ratios(sweeps: list, training: list) -> list:
    return [*sweeps, *(r for row in training for r in row["ratios"])]
