"""Ratios, targets, consistency checks and the Markdown table of a case's three sides."""

from __future__ import annotations

#: Issue 6's targets: (case, ratio) -> maximum. Ratios are of wall time unless named.
TARGETS = {
    ("full_year", "platform/plain"): 1.5,
    ("full_year", "platform/plain peak memory"): 1.2,
    ("full_year", "plain/bare"): 1.2,
    ("scale", "platform/plain"): 1.1,
}


def _ratio(a, b):
    return round(a / b, 3) if a is not None and b else None


def ratios(sides: dict) -> dict:
    p, s, b = (sides.get(k) for k in ("platform", "plain", "bare"))
    out = {}
    if p and s:
        out["platform/plain"] = _ratio(p["wall_s"], s["wall_s"])
        out["platform/plain work"] = _ratio(p["work_s"], s["work_s"])
        out["platform/plain peak memory"] = _ratio(p["peak_rss_mb"], s["peak_rss_mb"])
    if s and b:
        out["plain/bare"] = _ratio(s["wall_s"], b["wall_s"])
        out["plain/bare work"] = _ratio(s["work_s"], b["work_s"])
        out["plain/bare peak memory"] = _ratio(s["peak_rss_mb"], b["peak_rss_mb"])
    return out


def targets(case: str, quick: bool, r: dict) -> dict:
    """Each target of this case: the measured ratio, the limit, met or not (quick runs are
    reported against the same limits, for information only)."""
    return {name: {"measured": r.get(name), "max": limit,
                   "met": r.get(name) is not None and r[name] <= limit,
                   **({"note": "quick run: not the target's size"} if quick else {})}
            for (c, name), limit in TARGETS.items() if c == case}


def consistency(sides: dict) -> dict:
    """Did the sides do the same work? Rows per layer and the validation ROC AUC."""
    layers = ("raw", "processed", "quarantine", "features", "predictions")
    rows = {k: [sides[s]["rows"].get(k) for s in sides] for k in layers}
    auc = [sides[s]["model"]["roc_auc"] for s in sides]
    return {"sides": list(sides), "rows": rows,
            "rows_equal": all(len(set(v)) == 1 for v in rows.values()),
            "roc_auc": auc,
            "roc_auc_equal": max(auc) - min(auc) < 1e-9 if None not in auc else False}


def where_time_goes(platform: dict, plain: dict) -> dict:
    """The platform's extra time, split: events x cost per event, hashing, re-reads."""
    ev = platform["events"]
    extra = platform["work_s"] - plain["work_s"]
    # Events from the run's own event log: the gaps between a step's consecutive
    # materializations (their writes, batched or not), and the other events at the mean gap.
    gaps = ev.get("materialization_gaps") or {}
    if gaps.get("count"):
        events_s = gaps["sum_s"] + (ev["total"] - gaps["count"]) * gaps["mean_ms"] / 1000
        per_event = round(events_s / ev["total"] * 1000, 2)
    else:
        per_event = platform["event_write_ms"]
        events_s = ev["total"] * per_event / 1000
    probe = platform["overhead_probe"]
    rest = extra - events_s - probe["hashing_s"] - probe["read_back_s"]
    return {"platform_minus_plain_work_s": round(extra, 2),
            "events_x_cost_s": round(events_s, 2),
            "events": ev["total"], "ms_per_event (event log)": per_event,
            "ms_per_event (probe after the run)": platform["event_write_ms"],
            "content_hashing_s": probe["hashing_s"],
            "inputs_read_back_s": probe["read_back_s"],
            "rest_s (checks, metadata, dagster step machinery, differences in work)": round(rest, 2)}


def table(results: list[dict]) -> str:
    head = ("| case | platform s | plain s | bare s | platform/plain | plain/bare | platform MB "
            "| plain MB | bare MB | peak platform/plain | events | events/partition |\n"
            "|---|---|---|---|---|---|---|---|---|---|---|---|")
    lines = [head]
    for r in results:
        s = r["sides"]
        name = r["stem"]

        def g(side, key, fmt="{:.1f}", s=s):
            return fmt.format(s[side][key]) if side in s else "-"

        q = r["ratios"]
        ev = s["platform"]["events"] if "platform" in s else {}
        lines.append(
            f"| {name} | {g('platform', 'wall_s')} | {g('plain', 'wall_s')} | {g('bare', 'wall_s')} "
            f"| {q.get('platform/plain', '-')} | {q.get('plain/bare', '-')} "
            f"| {g('platform', 'peak_rss_mb', '{:.0f}')} | {g('plain', 'peak_rss_mb', '{:.0f}')} "
            f"| {g('bare', 'peak_rss_mb', '{:.0f}')} | {q.get('platform/plain peak memory', '-')} "
            f"| {ev.get('total', '-')} | {ev.get('per_partition', '-')} |")
    return "\n".join(lines)


def _predictions_file(workdir: str, side: str, day: str):
    from pathlib import Path

    data = Path(workdir) / "data"
    if side == "platform":
        found = sorted(data.glob(f"tables/*/predictions/{day}/*.parquet"))
        return found[-1] if found else None
    path = data / "predictions" / f"{day}.parquet"
    return path if path.exists() else None


def same_predictions(workdirs: dict[str, str], days: list[str]) -> dict:
    """Are the sides' predictions for these days the same rows and values (to 1e-12)?"""
    import numpy as np
    import pandas as pd

    out = {}
    for day in days:
        frames = {side: pd.read_parquet(p) for side, wd in workdirs.items()
                  if (p := _predictions_file(wd, side, day)) is not None}
        if len(frames) < 2:
            continue
        ref_side, ref = next(iter(frames.items()))
        out[day] = all(
            len(f) == len(ref) and np.allclose(f["prediction"].to_numpy(),
                                               ref["prediction"].to_numpy(), rtol=0, atol=1e-12)
            for f in frames.values())
    return {"days_compared": out, "equal": bool(out) and all(out.values())}
