from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest

import ml_assets.core.storage as storage_mod
from ml_assets.core.storage import LocalStore, S3Store, split_s3_uri
from ml_assets.core.tables import (
    column_schema,
    combine_hashes,
    content_hash,
    from_parquet_bytes,
    to_parquet_bytes,
)


@pytest.fixture
def store(tmp_path):
    return LocalStore(str(tmp_path / "root"))


# --- LocalStore ---------------------------------------------------------------------------------

def test_put_get_exists_list_round_trip(store, tmp_path):
    uri = store.put("pipe/2024-01-01/part.parquet", b"\x00abc")
    store.put("pipe/2024-01-02/part.parquet", b"xyz")
    store.put("other/x.bin", b"1")
    assert uri == str((tmp_path / "root" / "pipe/2024-01-01/part.parquet").resolve())
    assert store.get("pipe/2024-01-01/part.parquet") == b"\x00abc"
    assert store.exists("pipe/2024-01-02/part.parquet")
    assert not store.exists("pipe/2024-01-03/part.parquet")
    assert store.list("pipe") == ["pipe/2024-01-01/part.parquet", "pipe/2024-01-02/part.parquet"]
    assert store.list("") == ["other/x.bin", "pipe/2024-01-01/part.parquet",
                              "pipe/2024-01-02/part.parquet"]
    assert store.list("missing") == []


def test_put_overwrites(store):
    store.put("a/b", b"old")
    store.put("a/b", b"new")
    assert store.get("a/b") == b"new"


def test_get_missing_raises_file_not_found(store):
    with pytest.raises(FileNotFoundError, match="no such stored object"):
        store.get("nope/x")


def test_crash_during_write_leaves_no_file(store, tmp_path, monkeypatch):
    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(storage_mod.os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        store.put("pipe/day/part.parquet", b"data")
    folder = tmp_path / "root" / "pipe" / "day"
    assert not (folder / "part.parquet").exists()
    assert list(folder.iterdir()) == []


def test_crash_during_overwrite_keeps_old_content(store, tmp_path, monkeypatch):
    store.put("pipe/part", b"old")
    monkeypatch.setattr(storage_mod.os, "replace", lambda src, dst: (_ for _ in ()).throw(
        KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        store.put("pipe/part", b"new")
    monkeypatch.undo()
    assert store.get("pipe/part") == b"old"
    assert sorted(p.name for p in (tmp_path / "root" / "pipe").iterdir()) == ["part"]


def test_list_skips_hidden_temp_files(store, tmp_path):
    store.put("pipe/a", b"1")
    (tmp_path / "root" / "pipe" / ".a.123.tmp").write_bytes(b"partial")
    assert store.list("pipe") == ["pipe/a"]


BAD_KEYS = ["../escape", "a/../../escape", "/abs/path", "", "a//b", "a/./b", "a/", ".."]


@pytest.mark.parametrize("key", BAD_KEYS)
@pytest.mark.parametrize("op", ["put", "get", "exists", "uri"])
def test_invalid_keys_raise(store, key, op):
    args = (key, b"x") if op == "put" else (key,)
    with pytest.raises(ValueError, match="invalid storage key"):
        getattr(store, op)(*args)


def test_list_rejects_prefix_outside_root(store, tmp_path):
    store.put("a/b", b"1")
    (tmp_path / "secret.txt").write_text("s")
    with pytest.raises(ValueError, match="invalid storage key"):
        store.list("..")


# --- S3Store (moto, in-process) -----------------------------------------------------------------

@pytest.fixture
def s3_client(monkeypatch):
    moto = pytest.importorskip("moto")
    boto3 = pytest.importorskip("boto3")
    for var, value in {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
                       "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(var, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    with moto.mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket="test-bucket")
        yield client


def test_s3_store_round_trip(s3_client):
    s3 = S3Store("s3://test-bucket/models", s3_client)
    assert s3.put("pipe/a/model.txt", b"m") == "s3://test-bucket/models/pipe/a/model.txt"
    assert s3.get("pipe/a/model.txt") == b"m"
    assert s3.exists("pipe/a/model.txt") and not s3.exists("pipe/b/model.txt")
    assert s3.list("pipe") == ["pipe/a/model.txt"]
    with pytest.raises(FileNotFoundError, match="s3://test-bucket/models/pipe/zz"):
        s3.get("pipe/zz")
    with pytest.raises(ValueError, match="invalid storage key"):
        s3.put("../x", b"1")


def _s3(s3_client, tmp_path):
    return S3Store("s3://test-bucket/models", s3_client)


def _local(s3_client, tmp_path):
    return LocalStore(str(tmp_path))


@pytest.mark.parametrize("make", [
    _local,
    _s3,
])
def test_list_prefix_is_a_folder_not_a_string_prefix(s3_client, tmp_path, make):
    store = make(s3_client, tmp_path)
    store.put("flights/a/model.json", b"1")
    store.put("flights_v2/b/model.json", b"2")
    assert store.list("flights") == ["flights/a/model.json"]


@pytest.mark.parametrize("uri,parts", [
    ("s3://b/p/q", ("b", "p/q")), ("s3://b", ("b", "")), ("s3://b/", ("b", "")),
])
def test_split_s3_uri(uri, parts):
    assert split_s3_uri(uri) == parts


@pytest.mark.parametrize("uri", ["b/p", "s3://", "/local/path"])
def test_split_s3_uri_rejects(uri):
    with pytest.raises(ValueError):
        split_s3_uri(uri)


# --- table hashes and Parquet -------------------------------------------------------------------

def typed_frame() -> pd.DataFrame:
    return pd.DataFrame({
        "i": pd.array([1, None, 3], dtype="Int64"),
        "s": pd.array(["a", None, "c"], dtype="string"),
        "f": [1.5, np.nan, -2.0],
        "t": pd.to_datetime(["2024-01-01 10:00", None, "2024-01-03 00:00"]).astype("datetime64[ns]"),
        "b": pd.array([True, None, False], dtype="boolean"),
    })


def test_content_hash_equal_for_equal_frames():
    assert content_hash(typed_frame()) == content_hash(typed_frame())


@pytest.mark.parametrize("change", [
    lambda df: df.assign(f=[1.5, np.nan, -2.5]),
    lambda df: df.assign(s=pd.array(["a", None, "C"], dtype="string")),
    lambda df: df.assign(i=pd.array([1, 2, 3], dtype="Int64")),
    lambda df: df.iloc[::-1].reset_index(drop=True),
    lambda df: df.iloc[:2],
    lambda df: df.rename(columns={"f": "g"}),
], ids=["float_value", "string_value", "null_filled", "row_order", "row_dropped", "rename"])
def test_content_hash_changes_with_values(change):
    assert content_hash(change(typed_frame())) != content_hash(typed_frame())


@pytest.mark.parametrize("column,dtype", [
    ("i", "float64"), ("s", "object"), ("f", "float32"), ("b", "object"),
])
def test_content_hash_changes_with_dtype(column, dtype):
    df = typed_frame()
    changed = df.assign(**{column: df[column].astype(dtype)})
    assert content_hash(changed) != content_hash(df)


def test_content_hash_ignores_index():
    df = typed_frame()
    assert content_hash(df.set_axis([10, 11, 12])) == content_hash(df)


def test_content_hash_of_empty_frames_depends_on_schema():
    empty = typed_frame().iloc[0:0]
    assert content_hash(empty) == content_hash(typed_frame().iloc[0:0])
    assert content_hash(empty) != content_hash(empty.drop(columns=["b"]))


def test_combine_hashes_is_order_independent():
    assert combine_hashes({"a": "1", "b": "2"}) == combine_hashes({"b": "2", "a": "1"})
    assert combine_hashes({"a": "1", "b": "2"}) != combine_hashes({"a": "2", "b": "1"})


def test_parquet_round_trip_keeps_dtypes_and_values():
    df = typed_frame()
    back = from_parquet_bytes(to_parquet_bytes(df))
    assert column_schema(back) == column_schema(df)
    assert column_schema(df) == [("i", "Int64"), ("s", "string"), ("f", "float64"),
                                 ("t", "datetime64[ns]"), ("b", "boolean")]
    pd.testing.assert_frame_equal(back, df)
    assert content_hash(back) == content_hash(df)


def test_parquet_bytes_are_deterministic():
    assert to_parquet_bytes(typed_frame()) == to_parquet_bytes(typed_frame())


def test_atomic_write_uses_os_replace(store, monkeypatch):
    calls = []
    real = os.replace
    monkeypatch.setattr(storage_mod.os, "replace", lambda s, d: (calls.append((s, d)), real(s, d)))
    store.put("x/y", b"1")
    assert len(calls) == 1 and str(calls[0][1]).endswith(os.path.join("x", "y"))


def test_put_all_writes_every_item_skips_stored_keys_and_raises_after_the_others(tmp_path):
    from ml_assets.core.storage import put_all

    store = LocalStore(str(tmp_path))
    store.put("t/old.parquet", b"kept")
    put_all(store, [(f"t/{i}.parquet", bytes([i])) for i in range(20)]
            + [("t/old.parquet", b"new")], skip_existing=True)
    assert [store.get(f"t/{i}.parquet") for i in range(20)] == [bytes([i]) for i in range(20)]
    assert store.get("t/old.parquet") == b"kept"
    put_all(store, [("t/old.parquet", b"new")] * 2)  # without skip_existing: overwritten
    assert store.get("t/old.parquet") == b"new"

    class Failing(LocalStore):
        def put(self, key, data):
            if key.endswith("bad"):
                raise OSError(f"{key}: disk full")
            return super().put(key, data)

    failing = Failing(str(tmp_path / "f"))
    with pytest.raises(OSError, match="bad: disk full"):
        put_all(failing, [("a/bad", b"x")] + [(f"a/{i}", b"y") for i in range(10)])
    assert all(failing.exists(f"a/{i}") for i in range(10))
    assert not failing.exists("a/bad")
