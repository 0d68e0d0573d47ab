"""The file manifest of a glob source: incremental refresh, compare-and-swap merging, and the
rules for the days a file can hold."""

from __future__ import annotations

import datetime as dt
import threading

import pytest

from ml_assets.core import file_manifest as fm
from ml_assets.core.storage import LocalStore, S3Store

HEADER = ("/landing/*.csv", "csv", "ts")
P = (dt.date(2024, 3, 1), dt.date(2024, 4, 1))


def _entry(item: fm.Listed, days=(("2024-03-02", "2024-03-03"),), **kw) -> fm.FileEntry:
    return fm.FileEntry(item.uri, item.size, item.version, True, rows=3,
                        days=[list(d) for d in days], **kw)


def test_only_new_or_changed_files_are_scanned(tmp_path):
    store = LocalStore(str(tmp_path))
    key = fm.manifest_key("p")
    scanned: list[str] = []

    def scan(item):
        scanned.append(item.uri)
        return _entry(item)

    listing = [fm.Listed(f"/landing/{i}.csv", 10, f"v{i}") for i in range(5)]
    manifest, first = fm.update(store, key, HEADER, listing, scan)
    assert len(manifest.files) == 5 and first == sorted(f.uri for f in listing)
    scanned.clear()
    manifest, again = fm.update(store, key, HEADER, listing, scan)
    assert again == [] and scanned == []
    listing[2] = fm.Listed(listing[2].uri, 11, "v2b")  # changed
    listing.append(fm.Listed("/landing/new.csv", 10, "n"))  # new
    del listing[0]  # removed
    manifest, third = fm.update(store, key, HEADER, listing, scan)
    assert third == ["/landing/2.csv", "/landing/new.csv"]
    assert "/landing/0.csv" not in manifest.files
    # the changed file remembers the days of its previous version
    assert manifest.files["/landing/2.csv"].previous_days == [["2024-03-02", "2024-03-03"]]
    stored, _ = fm.load(store, key)
    assert stored.files.keys() == manifest.files.keys()


def test_another_source_or_a_damaged_document_starts_over(tmp_path):
    store = LocalStore(str(tmp_path))
    key = fm.manifest_key("p")
    listing = [fm.Listed("/landing/a.csv", 1, "v")]
    fm.update(store, key, HEADER, listing, _entry)
    calls = []
    fm.update(store, key, ("/landing/*.csv", "csv", "other_ts"), listing,
              lambda i: calls.append(i) or _entry(i))
    assert len(calls) == 1
    store.put(key, b"{not json")
    calls.clear()
    manifest, _ = fm.update(store, key, HEADER, listing, lambda i: calls.append(i) or _entry(i))
    assert len(calls) == 1 and manifest.files["/landing/a.csv"].readable


@pytest.mark.parametrize("backend", ["local", "s3"])
def test_concurrent_refreshes_lose_no_entry(tmp_path, backend, request):
    if backend == "s3":
        client = request.getfixturevalue("s3_client")
        from ml_assets_tests.conftest import BUCKET

        store = S3Store(f"s3://{BUCKET}/tables", client)
    else:
        store = LocalStore(str(tmp_path))
    key = fm.manifest_key("p")
    errors = []

    def refresh(n):
        try:  # each writer sees a partial listing (upserts), as `{date}` runs would
            fm.update(store, key, HEADER, [fm.Listed(f"/landing/{n}.csv", 1, "v")], _entry,
                      complete=False)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=refresh, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    manifest, _ = fm.load(store, key)
    assert sorted(manifest.files) == sorted(f"/landing/{n}.csv" for n in range(8))


def test_days_home_and_outside_rows():
    e = fm.FileEntry("/l/x.csv", 1, "v", True, days=[["2024-02-27", "2024-03-02"],
                                                      ["2099-01-01", "2099-01-01"]])
    assert e.days_in(*P) == ["2024-03-01", "2024-03-02"]
    assert e.home(*P) == "2024-03-01" and e.outside_rows(*P)
    inside = fm.FileEntry("/l/y.csv", 1, "v", True, days=[["2024-03-05", "2024-03-05"]])
    assert not inside.outside_rows(*P)
    assert fm.FileEntry("/l/y.csv", 1, "v", True, days=[["2024-03-05", "2024-03-05"]],
                        untimed_rows=1).outside_rows(*P)
    assert fm.FileEntry("/l/z.csv", 1, "v", True, days=[["2099-01-01", "2099-01-02"]]).home(*P) is None


def test_days_an_unreadable_file_could_hold():
    named = fm.FileEntry("s3://b/landing/credit-2024-03-07.csv", 0, "v", False)
    assert named.could_hold(*P) == ["2024-03-07"]
    compact = fm.FileEntry("/l/export_20240308.csv", 0, "v", False)
    assert compact.could_hold(*P) == ["2024-03-08"]
    outside = fm.FileEntry("/l/credit-2023-01-01.csv", 0, "v", False)
    assert outside.could_hold(*P) == []
    remembered = fm.FileEntry("/l/dump.csv", 0, "v", False,
                              previous_days=[["2024-03-09", "2024-03-10"]])
    assert remembered.could_hold(*P) == ["2024-03-09", "2024-03-10"]
    assert fm.FileEntry("/l/dump.csv", 0, "v", False).could_hold(*P) == []
    # two different dates in a name: no date is trusted
    assert fm.date_in_name("/l/2024-03-01_to_2024-03-05.csv") is None
    assert fm.date_in_name("/l/2024-13-45.csv") is None


def test_day_ranges_round_trip():
    days = ["2024-03-01", "2024-03-02", "2024-03-05", "2024-02-29"]
    ranges = fm.day_ranges(days)
    assert ranges == [["2024-02-29", "2024-03-02"], ["2024-03-05", "2024-03-05"]]
    assert fm.expand(ranges) == sorted(days)


@pytest.mark.parametrize("mask", [0o022, 0o027, 0o002])
def test_local_store_files_follow_the_umask(tmp_path, mask):
    import os

    store = LocalStore(str(tmp_path))
    old = os.umask(mask)
    try:
        store.put("a/table.parquet", b"x")
        store.put_if("a/doc.json", b"{}", None)
    finally:
        os.umask(old)
    modes = {oct((tmp_path / "a" / n).stat().st_mode & 0o777) for n in ("table.parquet", "doc.json")}
    assert modes == {oct(0o666 & ~mask)}
    assert not [p for p in (tmp_path / "a").iterdir() if p.name.endswith(".tmp")]
