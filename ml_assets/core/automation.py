"""When to retrain, and which days new files hold: the decisions behind the sensors, as pure
functions of what is stored (check results, file listings) and the sensor's cursor.

Drift episodes. A monitoring check (`feature_drift`, `prediction_drift`, `model_performance`)
that records level ERROR against production model X opens an episode for (check, X). One retrain
run is requested per episode, however many ERROR days follow. The episode ends when the check
records a level other than ERROR on days reaching the episode's newest ERROR day (a result on
older days only, such as re-monitoring an old day or a corrected old file, neither ends nor
extends it), or when production moves to another model (a later ERROR against the new model is a
new episode). The run key names the check, X, the episode's first day and the `as_of` day; a key
that already has a run is never requested again (Dagster would skip it), it is reported as
already retrained. Retrains are at least `cooldown` seconds
apart: an episode that opens during the cooldown waits, and is requested when it ends. A retrain
is never requested as of a day the last one already trained up to: it would fit the same window
again (an identical model). Such an episode waits for an ERROR on a later day.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

MONITORING_CHECKS = ("feature_drift", "prediction_drift", "model_performance")
TRIGGER_OF_CHECK = {"feature_drift": "drift", "prediction_drift": "drift",
                    "model_performance": "performance"}


@dataclass(frozen=True)
class Evaluation:
    """One stored monitoring check result, as the sensor reads it."""

    storage_id: int
    run_id: str
    check: str
    level: str
    production_model_id: str
    error_days: list[str] = field(default_factory=list)
    observed: float | None = None
    drift_share: float | None = None
    first_day: str | None = None  # the days the result covers (the run's partitions);
    last_day: str | None = None   # None: unknown (read as covering the newest day)

    @classmethod
    def from_metadata(cls, storage_id: int, run_id: str, check: str, meta: dict[str, Any],
                      covered: tuple[str, str] | None = None) -> Evaluation:
        """`covered`: the run's partition range, for a result whose metadata does not name the
        days it covers (stored before `first_day`/`last_day` were recorded)."""
        days = [d.strip() for d in str(meta.get("error_days", "")).split(",")
                if d.strip() and d.strip() != "none"]
        share = meta.get("drift_share")
        first = str(meta.get("first_day") or "") or (covered[0] if covered else None)
        last = str(meta.get("last_day") or "") or (covered[1] if covered else None)
        return cls(storage_id, run_id, check, str(meta.get("level", "OK")),
                   str(meta.get("production_model_id", "")), sorted(days),
                   _float(meta.get("observed")), _float(share) if check == "feature_drift" else None,
                   first or None, last or None)

    @property
    def days_text(self) -> str:
        if self.last_day is None:
            return "its days"
        return self.last_day if self.first_day in (None, self.last_day) else \
            f"{self.first_day}..{self.last_day}"


def _float(value) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


@dataclass
class Episode:
    check: str
    production_model_id: str
    start_day: str
    last_error_day: str
    opened_by_run: str
    observed: float | None = None
    drift_share: float | None = None
    run_key: str | None = None  # set once a retrain has been requested for it


@dataclass
class RetrainCursor:
    """The retrain sensor's cursor: the newest result read of each check (by record id), the
    open episodes, and when the last retrain was requested."""

    seen: dict[str, int] = field(default_factory=dict)
    episodes: dict[str, Episode] = field(default_factory=dict)
    last_request_at: float | None = None
    last_run_key: str | None = None
    last_as_of: str | None = None  # the training window's last day of the last request

    def is_new(self, check: str, record_id: int) -> bool:
        return record_id > self.seen.get(check, 0)

    def to_json(self) -> str:
        return json.dumps({"seen": self.seen,
                           "episodes": {k: asdict(v) for k, v in self.episodes.items()},
                           "last_request_at": self.last_request_at,
                           "last_run_key": self.last_run_key,
                           "last_as_of": self.last_as_of}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str | None) -> RetrainCursor:
        if not text:
            return cls()
        try:
            doc = json.loads(text)
            return cls({k: int(v) for k, v in doc.get("seen", {}).items()},
                       {k: Episode(**v) for k, v in doc.get("episodes", {}).items()},
                       doc.get("last_request_at"), doc.get("last_run_key"),
                       doc.get("last_as_of"))
        except (ValueError, TypeError, AttributeError):
            return cls()  # a cursor from another version: start over (episodes re-open once)


@dataclass(frozen=True)
class RetrainRequest:
    run_key: str
    trigger: str            # drift | performance
    as_of: str              # the newest ERROR day of the episode(s)
    start: str              # first day to re-score and re-monitor
    end: str                # last day (inclusive)
    checks: tuple[str, ...]
    drift_share: float | None
    production_model_id: str


def run_key_of(episode: Episode, as_of: str) -> str:
    """One key per (episode, training window): the same episode as of the same day is the same
    retrain; an episode that ended and re-opened on the same first day, with ERROR days after
    the last retrain's `as_of`, trains on a longer window and gets its own key."""
    return f"retrain:{episode.check}:{episode.production_model_id}:{episode.start_day}:{as_of}"


def plan_retrain(
    cursor: RetrainCursor,
    evaluations: list[Evaluation],
    production_model_id: str | None,
    latest_features_day: str | None,
    now: float,
    cooldown_seconds: float,
    run_key_used: Callable[[str], bool] | None = None,
) -> tuple[RetrainCursor, RetrainRequest | None, list[str]]:
    """Read new check results into episodes; request at most one retrain. Returns the new
    cursor, the request (or None) and what happened, for the tick's log or SkipReason.
    `run_key_used(key)`: whether a run with that key was already launched (Dagster skips a
    request with a used key, so none is made and the log says so)."""
    notes: list[str] = []
    episodes = dict(cursor.episodes)
    seen = dict(cursor.seen)
    for ev in sorted(evaluations, key=lambda e: e.storage_id):
        if ev.check not in MONITORING_CHECKS or ev.storage_id <= seen.get(ev.check, 0):
            continue
        seen[ev.check] = ev.storage_id
        open_ep = episodes.get(ev.check)
        if production_model_id and ev.production_model_id and ev.production_model_id != production_model_id:
            notes.append(f"{ev.check} {ev.level} from run {ev.run_id[:8]} was measured against "
                         f"model {ev.production_model_id}, not production {production_model_id}: ignored")
            continue
        if ev.level != "ERROR":
            if open_ep is not None and ev.last_day is not None \
                    and ev.last_day < open_ep.last_error_day:
                notes.append(f"{ev.check} is {ev.level} on {ev.days_text} (run {ev.run_id[:8]}), "
                             f"days before the episode's newest ERROR day {open_ep.last_error_day}"
                             f": the episode from {open_ep.start_day} stays open")
            elif open_ep is not None:
                notes.append(f"{ev.check} is {ev.level} again (run {ev.run_id[:8]}): the episode "
                             f"from {open_ep.start_day} ended")
                episodes.pop(ev.check)
            else:
                notes.append(f"{ev.check} is {ev.level} (run {ev.run_id[:8]}): only ERROR retrains")
            continue
        if not ev.error_days:
            notes.append(f"{ev.check} ERROR from run {ev.run_id[:8]} names no day: ignored")
            continue
        if open_ep is not None and open_ep.production_model_id == ev.production_model_id:
            open_ep.last_error_day = max(open_ep.last_error_day, ev.error_days[-1])
            notes.append(f"{ev.check} ERROR on {', '.join(ev.error_days)} continues the episode "
                         f"from {open_ep.start_day}" + (f" (retrain {open_ep.run_key} already "
                                                        "requested)" if open_ep.run_key else ""))
            continue
        episodes[ev.check] = Episode(ev.check, ev.production_model_id, ev.error_days[0],
                                     ev.error_days[-1], ev.run_id, ev.observed, ev.drift_share)
        notes.append(f"{ev.check} ERROR on {', '.join(ev.error_days)} against "
                     f"{ev.production_model_id}: a new drift episode")
    new = RetrainCursor(seen, episodes, cursor.last_request_at, cursor.last_run_key,
                        cursor.last_as_of)
    pending = sorted((e for e in episodes.values() if e.run_key is None),
                     key=lambda e: (e.start_day, MONITORING_CHECKS.index(e.check)))
    if not pending:
        if not notes:
            notes.append("no new monitoring check results" if not episodes else
                         "open episodes already have their retrain: "
                         + ", ".join(f"{e.check} since {e.start_day} ({e.run_key})"
                                     for e in episodes.values()))
        return new, None, notes
    if latest_features_day is None:
        notes.append("an episode is open but no features partition is materialized to train on")
        return new, None, notes
    if cursor.last_request_at is not None and now - cursor.last_request_at < cooldown_seconds:
        wait_until = dt.datetime.fromtimestamp(cursor.last_request_at + cooldown_seconds, dt.UTC)
        notes.append(f"cooldown: the last retrain ({cursor.last_run_key}) was requested "
                     f"{now - cursor.last_request_at:.0f} s ago; the next is allowed at "
                     f"{wait_until.isoformat(timespec='seconds')} (automation.cooldown_seconds="
                     f"{cooldown_seconds:g}); pending: "
                     + ", ".join(f"{e.check} since {e.start_day}" for e in pending))
        return new, None, notes
    first = pending[0]
    as_of = min(max(e.last_error_day for e in pending), latest_features_day)
    run_key = run_key_of(first, as_of)
    if cursor.last_as_of is not None and as_of <= cursor.last_as_of:
        notes.append(f"the last retrain ({cursor.last_run_key}) trained as of {cursor.last_as_of}; "
                     f"one as of {as_of} would fit the same window again, so "
                     + ", ".join(f"{e.check} since {e.start_day}" for e in pending)
                     + f" waits for an ERROR on a day after {cursor.last_as_of}")
        return new, None, notes
    if run_key_used is not None and run_key_used(run_key):
        for e in pending:
            e.run_key = run_key
        notes.append(f"already retrained for this episode (run key {run_key}): "
                     + ", ".join(f"{e.check} since {e.start_day}" for e in pending)
                     + f" as of {as_of} has had its run (Dagster skips a used run key), so none is "
                     "launched")
        return new, None, notes
    start = min(min(e.start_day for e in pending), as_of)
    shares = [e.drift_share for e in pending if e.drift_share is not None]
    request = RetrainRequest(
        run_key=run_key, trigger=TRIGGER_OF_CHECK[first.check], as_of=as_of, start=start,
        end=max(latest_features_day, as_of), checks=tuple(e.check for e in pending),
        drift_share=max(shares) if shares else None, production_model_id=first.production_model_id)
    for e in pending:
        e.run_key = run_key
    new.last_request_at, new.last_run_key, new.last_as_of = now, run_key, as_of
    notes.append(f"retrain requested ({run_key}): as_of {as_of}, re-scoring {start}..{request.end}")
    return new, request, notes


# ---------------------------------------------------------------- new files
_DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}")


def date_pattern(uri_pattern: str) -> tuple[str, re.Pattern] | None:
    """For a `{date}` source URI: the glob that lists every day's file and a regex that reads the
    day back from a matching URI. None for a plain glob."""
    if "{date}" not in uri_pattern:
        return None
    glob = uri_pattern.replace("{date}", "????-??-??")
    parts = [re.escape(p) for p in uri_pattern.split("{date}")]
    regex = "(?P<date>\\d{4}-\\d{2}-\\d{2})".join(
        p.replace(r"\*", "[^/]*").replace(r"\?", "[^/]") for p in parts)
    return glob, re.compile(f"^{regex}$")


def file_version(size: int, modified: str | float, etag: str | None = None) -> str:
    """What identifies one version of a landing file: its etag if the store has one, else its
    size and modification time."""
    return etag.strip('"') if etag else f"{size}:{modified}"


def days_between(first: dt.date, last: dt.date) -> list[str]:
    return [(first + dt.timedelta(days=i)).isoformat() for i in range((last - first).days + 1)]


def new_data_run_key(files: dict[str, str], day: str | None = None) -> str:
    """A run key from the files (uri -> version) a run ingests: the same files, the same key.
    With `day`: the key of a run of that one day (an orphan day, below)."""
    text = "\n".join(f"{u}@{v}" for u, v in sorted(files.items()))
    if day is not None:
        text = f"day={day}\n{text}"
    return "new_data:" + hashlib.sha256(text.encode()).hexdigest()[:24]


# ---------------------------------------------------------------- orphan days
@dataclass(frozen=True)
class OrphanDay:
    """A day inside the partitions that a landing file the sensor has seen holds, and that raw
    has not materialized (typically: the run that asked for it failed, e.g. another day of that
    run was blocked by its file). Re-requested as a run of its own, keyed by the day and the
    versions of the files that hold it: each (day, versions) is tried once."""

    day: str
    files: dict[str, str]  # uri -> version, the seen files that hold the day
    run_key: str


def orphan_days(held: dict[str, list[str]], versions: dict[str, str], partitions: Iterable[str],
                materialized: Iterable[str], requested_now: Iterable[str] = ()) -> list[OrphanDay]:
    """The orphan days: `held` (seen file uri -> the days it holds) and `versions` (uri -> its
    seen version); the days raw has materialized and those this tick already requests are not
    orphans, nor days outside `partitions`."""
    skip = set(materialized) | set(requested_now)
    valid = set(partitions)
    files_of: dict[str, dict[str, str]] = {}
    for uri, days in held.items():
        if uri not in versions:
            continue
        for day in days:
            if day in valid and day not in skip:
                files_of.setdefault(day, {})[uri] = versions[uri]
    return [OrphanDay(day, files, new_data_run_key(files, day))
            for day, files in sorted(files_of.items())]


def _days_text(days: list[str], most: int = 10) -> str:
    return ", ".join(days[:most]) + (f" and {len(days) - most} more" if len(days) > most else "")


@dataclass(frozen=True)
class OrphanPlan:
    requests: list[OrphanDay]   # re-requested now, one run each
    running: list[str]          # covered by a queued or in-progress run: not requested
    tried: list[OrphanDay]      # already requested with these file versions: wait for a change

    def notes(self) -> list[str]:
        out = []
        if self.requests:
            out.append(f"re-requesting day(s) {_days_text([o.day for o in self.requests])} not "
                       "materialized after an earlier run failed (one run per day)")
        if self.running:
            out.append(f"day(s) {_days_text(self.running)} not materialized yet: a queued or "
                       "in-progress run covers them")
        if self.tried:
            out.append(f"day(s) {_days_text([o.day for o in self.tried])} still not materialized: "
                       "already re-requested with their files' current versions (the run failed); "
                       "waiting for one of their files to change")
        return out


def plan_orphans(orphans: list[OrphanDay], in_flight: Iterable[str], tried_keys: Iterable[str]
                 ) -> OrphanPlan:
    """Which orphan days to request now: not those a queued or in-progress run covers
    (`in_flight` days), not those whose run key was already used (`tried_keys`)."""
    running, tried_set = set(in_flight), set(tried_keys)
    return OrphanPlan(
        requests=[o for o in orphans if o.day not in running and o.run_key not in tried_set],
        running=[o.day for o in orphans if o.day in running],
        tried=[o for o in orphans if o.day not in running and o.run_key in tried_set])
