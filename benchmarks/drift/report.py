"""Compare the sides' per-column verdicts and scores, print the summary, write the JSON result."""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import sys
from pathlib import Path


def agreement(truth: dict, other: dict) -> dict:
    """Per-column verdict and score agreement of `other` against `truth` (both side results)."""
    theirs = {r["column"]: r for r in truth["records"]}
    disagree, worst_rel = [], 0.0
    for record in other["records"]:
        ref = theirs[record["column"]]
        if (record["drifted"], record["evaluated"]) != (ref["drifted"], ref["evaluated"]):
            disagree.append(record["column"])
        a, b = record["score"], ref["score"]
        if a is not None and b is not None and b != 0:
            worst_rel = max(worst_rel, abs(a - b) / abs(b))
        elif (a is None) != (b is None) or (b == 0 and a != 0):
            worst_rel = math.inf
    return {
        "columns": len(other["records"]),
        "verdicts_agree": not disagree and len(theirs) == len(other["records"]),
        "disagreeing_columns": disagree,
        "max_relative_score_difference": worst_rel,
    }


def sample_error(full: dict) -> dict:
    """How far the sampled scores (HTML report) are from the full-data scores, per method."""
    sampled = {r["column"]: r for r in full.get("sample_records", [])}
    by_method: dict[str, dict] = {}
    for record in full["records"]:
        sample = sampled.get(record["column"])
        if sample is None or record["score"] is None or sample["score"] is None:
            continue
        entry = by_method.setdefault(record["method"], {"max_abs_score_difference": 0.0, "verdict_flips": []})
        entry["max_abs_score_difference"] = max(entry["max_abs_score_difference"], abs(sample["score"] - record["score"]))
        if sample["drifted"] != record["drifted"]:
            entry["verdict_flips"].append(record["column"])
    return by_method


def machine() -> dict:
    info = {"nproc": os.cpu_count(), "python": sys.version.split()[0], "platform": platform.platform()}
    with contextlib.suppress(OSError, StopIteration):
        info["cpu"] = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
    from importlib import metadata

    info["versions"] = {pkg: metadata.version(pkg) for pkg in ("evidently", "numpy", "pandas", "scipy", "pyarrow")}
    return info


def _ratio(a: float, b: float) -> float | None:
    return round(a / b, 2) if b else None


def summarize(case: dict, runs: dict[str, list[dict]]) -> dict:
    """The JSON result: the case, each side's fastest run (by work time) and all its runs, ratios
    against Evidently, verdict agreement (of every run), and the HTML sample's error."""
    sides = {side: min(side_runs, key=lambda r: r["work_s"]) for side, side_runs in runs.items()}
    result: dict = {"case": case, "machine": machine(), "sides": sides, "all_runs": runs}
    evidently = sides.get("evidently")
    if evidently:
        result["ratios_vs_evidently"] = {
            side: {
                "work": _ratio(evidently["work_s"], res["work_s"]),
                "wall": _ratio(evidently["wall_s"], res["wall_s"]),
                "cpu": _ratio(evidently["cpu_s"], res["cpu_s"]),
                "peak_rss": _ratio(evidently["peak_rss_mb"], res["peak_rss_mb"]),
            }
            for side, res in sides.items()
            if side != "evidently"
        }
        result["agreement_with_evidently"] = {
            side: agreement(evidently, res) for side, res in sides.items() if side != "evidently"
        }
        every_run = [agreement(truth, run) for truth in runs["evidently"] for side_runs in runs.values() for run in side_runs]
        result["every_run_agrees"] = all(a["verdicts_agree"] for a in every_run)
    if "ours_html" in sides:
        result["html_sample_error"] = sample_error(sides["ours_html"])
    return result


def print_summary(result: dict) -> None:
    case = result["case"]
    print(
        f"\n{case['name']}: {case['rows']:,} current rows x {case['columns']} columns "
        f"({case['categorical']} categorical) vs {case['reference_rows']:,} reference rows; "
        f"methods {case['numeric_method']}/{case['categorical_method']}"
    )
    print(
        f"{'side':<12} {'work s':>8} {'wall s':>8} {'CPU s':>8} {'peak MB':>8} {'loaded MB':>9} {'import s':>8} "
        f"{'load s':>7} {'others CPU s':>12} {'drifted':>8}"
    )
    for side, res in result["sides"].items():
        drifted = sum(r["drifted"] for r in res["records"])
        print(
            f"{side:<12} {res['work_s']:>8.2f} {res['wall_s']:>8.2f} {res['cpu_s']:>8.2f} {res['peak_rss_mb']:>8.0f} "
            f"{res['rss_after_load_mb'] or 0:>9.0f} {res['import_s']:>8.2f} {res['load_s']:>7.2f} "
            f"{res['other_processes_cpu_s'] if res['other_processes_cpu_s'] is not None else '-':>12} "
            f"{drifted:>4}/{len(res['records'])}"
        )
    for side, ratios in result.get("ratios_vs_evidently", {}).items():
        agree = result["agreement_with_evidently"][side]
        print(
            f"evidently / {side}: work {ratios['work']}x, wall {ratios['wall']}x, CPU {ratios['cpu']}x, "
            f"peak memory {ratios['peak_rss']}x; "
            f"verdicts agree on {agree['columns'] - len(agree['disagreeing_columns'])}/{agree['columns']} columns "
            f"({'all' if agree['verdicts_agree'] else 'NOT all'}), max relative score difference "
            f"{agree['max_relative_score_difference']:.2e}"
        )
    if "every_run_agrees" in result:
        print(f"verdicts of every run of every side agree with every Evidently run: {result['every_run_agrees']}")
    for method, error in result.get("html_sample_error", {}).items():
        print(
            f"HTML sample vs full data, {method}: max |score difference| {error['max_abs_score_difference']:.4g}, "
            f"verdicts that differ in the sample: {error['verdict_flips'] or 'none'}"
        )


def write_result(result: dict, directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{result['case']['name']}.json"
    path.write_text(json.dumps(result, indent=1, default=str))
    return path
