"""The retrain planner and the landing-file helpers as pure functions."""

from __future__ import annotations

import pytest

from ml_assets.core.automation import (
    Evaluation,
    RetrainCursor,
    date_pattern,
    new_data_run_key,
    orphan_days,
    plan_orphans,
    plan_retrain,
)
from ml_assets.core.days import contiguous_ranges

HOUR = 3600.0


def ev(storage_id, level, days=(), check="feature_drift", model="m1", share=0.8, run="run-a",
       covers=None):
    """covers: (first, last) day the result covers; None: unknown."""
    first, last = covers or (None, None)
    return Evaluation(storage_id, run, check, level, model, list(days), share, share, first, last)


def test_error_opens_an_episode_and_requests_one_retrain():
    cursor, request, notes = plan_retrain(RetrainCursor(), [ev(5, "ERROR", ["2024-03-14", "2024-03-15"])],
                                          "m1", "2024-03-16", now=1000.0, cooldown_seconds=HOUR)
    assert request is not None
    assert request.run_key == "retrain:feature_drift:m1:2024-03-14:2024-03-15"
    assert (request.trigger, request.as_of, request.start, request.end) == (
        "drift", "2024-03-15", "2024-03-14", "2024-03-16")
    assert request.drift_share == 0.8
    assert cursor.seen == {"feature_drift": 5} and cursor.last_request_at == 1000.0
    assert "new drift episode" in notes[0]


def test_the_same_episode_never_requests_twice():
    cursor, first, _ = plan_retrain(RetrainCursor(), [ev(5, "ERROR", ["2024-03-14"])], "m1",
                                    "2024-03-14", now=0.0, cooldown_seconds=0)
    # a round trip through the stored cursor, as the daemon does
    cursor = RetrainCursor.from_json(cursor.to_json())
    cursor, again, notes = plan_retrain(cursor, [ev(9, "ERROR", ["2024-03-15"])], "m1",
                                        "2024-03-15", now=10.0, cooldown_seconds=0)
    assert first is not None and again is None
    assert "continues the episode from 2024-03-14" in notes[0] and first.run_key in notes[0]
    _, nothing, notes = plan_retrain(cursor, [], "m1", "2024-03-15", now=20.0, cooldown_seconds=0)
    assert nothing is None and "already have their retrain" in notes[0]


def test_a_passing_check_ends_the_episode_and_a_new_error_is_a_new_one():
    cursor, _, _ = plan_retrain(RetrainCursor(), [ev(1, "ERROR", ["2024-03-10"])], "m1",
                                "2024-03-10", now=0.0, cooldown_seconds=0)
    cursor, none, notes = plan_retrain(cursor, [ev(2, "OK")], "m1", "2024-03-11", now=1.0,
                                       cooldown_seconds=0)
    assert none is None and "the episode from 2024-03-10 ended" in notes[0]
    _, request, _ = plan_retrain(cursor, [ev(3, "ERROR", ["2024-03-20"])], "m1", "2024-03-20",
                                 now=2.0, cooldown_seconds=0)
    assert request.run_key == "retrain:feature_drift:m1:2024-03-20:2024-03-20"


def _open_episode():
    """feature_drift at ERROR on 06-11, retrained; ERROR continues up to 06-15."""
    cursor, first, _ = plan_retrain(RetrainCursor(), [ev(1, "ERROR", ["2024-06-11"],
                                                         covers=("2024-06-11", "2024-06-11"))],
                                    "m1", "2024-06-11", now=0.0, cooldown_seconds=0)
    cursor, more, _ = plan_retrain(cursor, [ev(2, "ERROR", ["2024-06-12", "2024-06-15"],
                                              covers=("2024-06-12", "2024-06-15"))],
                                   "m1", "2024-06-15", now=1.0, cooldown_seconds=0)
    assert first is not None and more is None
    return RetrainCursor.from_json(cursor.to_json()), first


def test_an_ok_on_days_before_the_episode_neither_ends_nor_extends_it():
    """Re-monitoring an old day (a re-run of 06-10, a corrected 05-10 file) says nothing about
    the drift of 06-11..06-15."""
    cursor, first = _open_episode()
    for sid, covers in ((3, ("2024-06-10", "2024-06-10")), (4, ("2024-05-10", "2024-05-10"))):
        cursor, request, notes = plan_retrain(cursor, [ev(sid, "OK", covers=covers)], "m1",
                                              "2024-06-15", now=2.0, cooldown_seconds=0)
        assert request is None
        assert "ended" not in notes[0] and "the episode from 2024-06-11 stays open" in notes[0]
    episode = cursor.episodes["feature_drift"]
    assert (episode.start_day, episode.last_error_day, episode.run_key) == (
        "2024-06-11", "2024-06-15", first.run_key)
    # the days re-scored, still ERROR: the same episode, no second request
    cursor, again, notes = plan_retrain(cursor, [ev(5, "ERROR", ["2024-06-11", "2024-06-15"],
                                                   covers=("2024-06-11", "2024-06-15"))],
                                        "m1", "2024-06-15", now=3.0, cooldown_seconds=0)
    assert again is None and "continues the episode from 2024-06-11" in notes[0]


def test_an_ok_on_the_episodes_days_ends_it():
    cursor, _ = _open_episode()
    cursor, request, notes = plan_retrain(cursor, [ev(3, "OK", covers=("2024-06-11", "2024-06-15"))],
                                          "m1", "2024-06-15", now=2.0, cooldown_seconds=0)
    assert request is None and "the episode from 2024-06-11 ended" in notes[0]
    assert cursor.episodes == {}
    # a later day alone, OK, also ends it
    cursor, _ = _open_episode()
    cursor, _, notes = plan_retrain(cursor, [ev(3, "WARN", covers=("2024-06-16", "2024-06-16"))],
                                    "m1", "2024-06-16", now=2.0, cooldown_seconds=0)
    assert "ended" in notes[0] and cursor.episodes == {}


def test_a_reopened_episode_trains_on_a_longer_window_under_its_own_run_key():
    """The episode ended (the days were OK), then ERROR again from the same first day against
    the same model, up to a day after the first retrain's as_of: a new retrain, a new key."""
    cursor, first = _open_episode()
    assert first.run_key == "retrain:feature_drift:m1:2024-06-11:2024-06-11"
    cursor, _, _ = plan_retrain(cursor, [ev(3, "OK", covers=("2024-06-11", "2024-06-15"))],
                                "m1", "2024-06-15", now=2.0, cooldown_seconds=0)
    cursor, second, notes = plan_retrain(cursor, [ev(4, "ERROR", ["2024-06-11", "2024-06-15"],
                                                     covers=("2024-06-11", "2024-06-15"))],
                                         "m1", "2024-06-15", now=3.0, cooldown_seconds=0)
    assert second is not None and second.as_of == "2024-06-15"
    assert second.run_key == "retrain:feature_drift:m1:2024-06-11:2024-06-15" != first.run_key
    assert f"retrain requested ({second.run_key})" in notes[-1]


def test_a_run_key_that_already_has_a_run_is_not_requested_again():
    """The cursor was lost (another version's cursor starts over): the same episode as of the
    same day has a run already; Dagster would skip the request, so none is made or logged."""
    cursor, first = _open_episode()
    used = {first.run_key}
    fresh = RetrainCursor()
    fresh, request, notes = plan_retrain(fresh, [ev(1, "ERROR", ["2024-06-11"],
                                                    covers=("2024-06-11", "2024-06-11"))],
                                         "m1", "2024-06-11", now=10.0, cooldown_seconds=0,
                                         run_key_used=used.__contains__)
    assert request is None
    assert not any("retrain requested" in n for n in notes)
    assert f"already retrained for this episode (run key {first.run_key})" in notes[-1]
    assert fresh.last_request_at is None  # no cooldown starts for a run that was not launched
    _, nothing, notes = plan_retrain(fresh, [], "m1", "2024-06-11", now=11.0, cooldown_seconds=0,
                                     run_key_used=used.__contains__)
    assert nothing is None and "already have their retrain" in notes[0]


def test_warn_never_starts_a_retrain():
    _, request, notes = plan_retrain(RetrainCursor(), [ev(1, "WARN", ["2024-03-10"])], "m1",
                                     "2024-03-10", now=0.0, cooldown_seconds=0)
    assert request is None


def test_cooldown_holds_a_new_episode_until_it_ends():
    cursor, first, _ = plan_retrain(RetrainCursor(), [ev(1, "ERROR", ["2024-03-10"])], "m1",
                                    "2024-03-10", now=0.0, cooldown_seconds=HOUR)
    cursor, _, _ = plan_retrain(cursor, [ev(2, "OK")], "m1", "2024-03-11", now=10.0,
                                cooldown_seconds=HOUR)
    cursor, held, notes = plan_retrain(cursor, [ev(3, "ERROR", ["2024-03-12"])], "m1",
                                       "2024-03-12", now=20.0, cooldown_seconds=HOUR)
    assert held is None and "cooldown" in notes[-1] and "pending: feature_drift since 2024-03-12" in notes[-1]
    _, later, _ = plan_retrain(cursor, [], "m1", "2024-03-12", now=HOUR + 1, cooldown_seconds=HOUR)
    assert later is not None and later.start == "2024-03-12"


def test_results_measured_against_an_older_model_are_ignored():
    _, request, notes = plan_retrain(RetrainCursor(), [ev(1, "ERROR", ["2024-03-10"], model="old")],
                                     "new", "2024-03-10", now=0.0, cooldown_seconds=0)
    assert request is None and "not production new: ignored" in notes[0]


def test_performance_and_drift_in_one_tick_make_one_run():
    evs = [ev(1, "ERROR", ["2024-03-10", "2024-03-12"], check="model_performance", share=None),
           ev(2, "ERROR", ["2024-03-10", "2024-03-11"])]
    cursor, request, _ = plan_retrain(RetrainCursor(), evs, "m1", "2024-03-12", now=0.0,
                                      cooldown_seconds=0)
    assert request.run_key == "retrain:feature_drift:m1:2024-03-10:2024-03-12"  # drift first on a tie
    assert request.trigger == "drift"
    assert set(request.checks) == {"feature_drift", "model_performance"}
    assert (request.start, request.as_of) == ("2024-03-10", "2024-03-12")
    assert all(e.run_key == request.run_key for e in cursor.episodes.values())


def test_an_episode_with_no_day_after_the_last_retrain_waits_for_one():
    """model_performance opens an episode at one tick and feature_drift at the next, on the same
    days: a second retrain as of the same day would fit the same window (an identical model)."""
    cursor, first, _ = plan_retrain(
        RetrainCursor(), [ev(1, "ERROR", ["2024-03-10", "2024-03-12"], check="model_performance",
                             share=None)], "m1", "2024-03-12", now=0.0, cooldown_seconds=0)
    cursor = RetrainCursor.from_json(cursor.to_json())  # as the daemon stores it
    assert first is not None and cursor.last_as_of == "2024-03-12"
    cursor, second, notes = plan_retrain(cursor, [ev(2, "ERROR", ["2024-03-11", "2024-03-12"])],
                                         "m1", "2024-03-12", now=1.0, cooldown_seconds=0)
    assert second is None and "would fit the same window again" in notes[-1]
    assert "feature_drift since 2024-03-11 waits for an ERROR on a day after 2024-03-12" in notes[-1]
    # the retrain promoted m2; drift measured against it on the same days: still the same window
    cursor, third, _ = plan_retrain(cursor, [ev(3, "ERROR", ["2024-03-12"], model="m2")], "m2",
                                    "2024-03-12", now=2.0, cooldown_seconds=0)
    assert third is None
    # an ERROR on a new day: a retrain as of it
    cursor, fourth, _ = plan_retrain(cursor, [ev(4, "ERROR", ["2024-03-13"], model="m2")], "m2",
                                     "2024-03-13", now=3.0, cooldown_seconds=0)
    assert fourth is not None and fourth.as_of == "2024-03-13"
    assert fourth.run_key == "retrain:feature_drift:m2:2024-03-12:2024-03-13"


def test_as_of_never_passes_the_newest_features_day():
    _, request, _ = plan_retrain(RetrainCursor(), [ev(1, "ERROR", ["2024-03-20"])], "m1",
                                 "2024-03-18", now=0.0, cooldown_seconds=0)
    assert request.as_of == "2024-03-18"


def test_no_features_means_no_request():
    _, request, notes = plan_retrain(RetrainCursor(), [ev(1, "ERROR", ["2024-03-20"])], "m1",
                                     None, now=0.0, cooldown_seconds=0)
    assert request is None and "no features partition" in notes[-1]


@pytest.mark.parametrize("pattern,uri,day", [
    ("/land/{date}.csv", "/land/2024-03-01.csv", "2024-03-01"),
    ("s3://b/in/day={date}/*.parquet", "s3://b/in/day=2024-03-02/part-0.parquet", "2024-03-02"),
    ("/land/{date}.csv", "/land/2024-03-01.csv.bak", None),
])
def test_date_pattern(pattern, uri, day):
    glob, regex = date_pattern(pattern)
    assert "{date}" not in glob
    match = regex.match(uri)
    assert (match.group("date") if match else None) == day


def test_contiguous_ranges_and_run_keys():
    assert contiguous_ranges(["2024-03-05", "2024-03-01", "2024-03-02", "2024-03-02"]) == [
        ("2024-03-01", "2024-03-02"), ("2024-03-05", "2024-03-05")]
    a = new_data_run_key({"x": "1", "y": "2"})
    assert a == new_data_run_key({"y": "2", "x": "1"}) != new_data_run_key({"x": "1", "y": "3"})


def test_results_already_read_are_skipped_and_a_bad_cursor_starts_over():
    cursor, first, _ = plan_retrain(RetrainCursor(), [ev(5, "ERROR", ["2024-03-14"])], "m1",
                                    "2024-03-14", now=0.0, cooldown_seconds=0)
    cursor, again, notes = plan_retrain(cursor, [ev(5, "ERROR", ["2024-03-14"])], "m1",
                                        "2024-03-14", now=1.0, cooldown_seconds=0)
    assert first is not None and again is None
    assert RetrainCursor.from_json("not json") == RetrainCursor()
    assert RetrainCursor.from_json('{"seen": 3}') == RetrainCursor()


# ---------------------------------------------------------------- orphan days
DAYS = ["2024-06-15", "2024-06-16", "2024-06-17", "2024-06-18"]
HELD = {"/land/2024-06-16.csv": ["2024-06-16"], "/land/2024-06-17.csv": ["2024-06-17"],
        "/land/2024-06-18.csv": ["2024-06-18"]}
VERSIONS = {u: "v1" for u in HELD}


def test_orphan_days_are_seen_days_in_the_partitions_not_materialized_each_keyed_alone():
    orphans = orphan_days(HELD, VERSIONS, DAYS, materialized=["2024-06-15"])
    assert [o.day for o in orphans] == ["2024-06-16", "2024-06-17", "2024-06-18"]
    assert orphans[0].files == {"/land/2024-06-16.csv": "v1"}
    # one key per (day, file versions): not the key of the run that asked for all three days,
    # and two days of one glob file get two keys
    assert len({o.run_key for o in orphans}) == 3
    assert new_data_run_key(VERSIONS) not in {o.run_key for o in orphans}
    big = orphan_days({"/land/all.csv": ["2024-06-16", "2024-06-17"]}, {"/land/all.csv": "v1"},
                      DAYS, materialized=[])
    assert len({o.run_key for o in big}) == 2
    assert all(o.run_key.startswith("new_data:") for o in orphans + big)
    # a new version of a day's file: a new key
    again = orphan_days(HELD, {**VERSIONS, "/land/2024-06-18.csv": "v2"}, DAYS, materialized=[])
    assert again[2].run_key != orphans[2].run_key and again[0].run_key == orphans[0].run_key
    # materialized, requested by this tick already, outside the partitions, or not a seen
    # version: not orphans
    assert orphan_days(HELD, VERSIONS, DAYS, materialized=DAYS) == []
    assert [o.day for o in orphan_days(HELD, VERSIONS, DAYS, [], requested_now=["2024-06-18"])] \
        == ["2024-06-16", "2024-06-17"]
    assert [o.day for o in orphan_days(HELD, VERSIONS, DAYS[:2], [])] == ["2024-06-16"]
    assert [o.day for o in orphan_days(HELD, {"/land/2024-06-17.csv": "v1"}, DAYS, [])] \
        == ["2024-06-17"]


def test_plan_orphans_skips_days_in_flight_and_keys_already_tried():
    orphans = orphan_days(HELD, VERSIONS, DAYS, materialized=[])
    plan = plan_orphans(orphans, in_flight=[], tried_keys=[])
    assert [o.day for o in plan.requests] == ["2024-06-16", "2024-06-17", "2024-06-18"]
    assert plan.notes() == ["re-requesting day(s) 2024-06-16, 2024-06-17, 2024-06-18 not "
                            "materialized after an earlier run failed (one run per day)"]
    # a queued or in-progress run covers 06-16: not requested, and said so
    plan = plan_orphans(orphans, in_flight=["2024-06-16", "2024-06-20"],
                        tried_keys=[orphans[2].run_key])
    assert [o.day for o in plan.requests] == ["2024-06-17"]
    assert plan.running == ["2024-06-16"]
    assert [o.day for o in plan.tried] == ["2024-06-18"]
    notes = "; ".join(plan.notes())
    assert "re-requesting day(s) 2024-06-17 not materialized after an earlier run failed" in notes
    assert "2024-06-16 not materialized yet: a queued or in-progress run covers them" in notes
    assert "2024-06-18 still not materialized: already re-requested" in notes
    # everything tried: nothing to request
    assert plan_orphans(orphans, [], [o.run_key for o in orphans]).requests == []
