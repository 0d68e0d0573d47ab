"""The model store: write-once models, semantic versions, aliases moved by compare-and-swap
(local disk and a real S3 endpoint), and the append-only audit log."""

from __future__ import annotations

import datetime as dt
import json
import threading
import time

import pytest

from ml_assets.config import Threshold
from ml_assets.core.gates import evaluate_gates
from ml_assets.core.lifecycle import feature_contract, promote_change, set_alias_change
from ml_assets.core.registry import (
    AliasConflict,
    AuditEntry,
    ModelStore,
    SemVer,
    UnknownModel,
    next_version,
)
from ml_assets.core.storage import LocalStore, PreconditionFailed, S3Store
from ml_assets.core.training import train
from ml_assets_tests.conftest import BUCKET
from ml_assets_tests.core._helpers import TRAIN_PARAMS, config, synthetic_days

T0 = dt.datetime(2024, 2, 1, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def cfg():
    return config()


@pytest.fixture(scope="module")
def frames():
    return synthetic_days(n_days=12, rows=60, seed=0)


@pytest.fixture(scope="module")
def trained(cfg, frames):
    return train(frames, cfg)


def gates_for(trained, minimum: float):
    return evaluate_gates(trained.metrics, {"roc_auc": Threshold(min=minimum)})


def lineage_of(frames, salt: str = "") -> dict:
    return {"features": {d: {"uri": f"/t/{d}.parquet", "content_hash": f"h{d}{salt}"} for d in frames}}


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path):
    if request.param == "local":
        return ModelStore(LocalStore(str(tmp_path / "models")))
    client = request.getfixturevalue("s3_client")
    return ModelStore(S3Store(f"s3://{BUCKET}/models", client))


# --- semantic versions --------------------------------------------------------------------------

@pytest.mark.parametrize("claims,contract,data,expected", [
    ([], "c", "d", "v1.0.0"),
    ([{"version": "v1.0.0", "contract_hash": "c", "data_hash": "d"}], "c", "d2", "v1.1.0"),
    ([{"version": "v1.0.0", "contract_hash": "c", "data_hash": "d"}], "c", "d", "v1.0.1"),
    ([{"version": "v1.3.2", "contract_hash": "c", "data_hash": "d"}], "c2", "d", "v2.0.0"),
    # the highest claim is the base, whatever the order
    ([{"version": "v1.10.0", "contract_hash": "c", "data_hash": "x"},
      {"version": "v1.9.0", "contract_hash": "c", "data_hash": "d"}], "c", "d", "v1.11.0"),
])
def test_next_version(claims, contract, data, expected):
    assert str(next_version(claims, contract, data)) == expected


@pytest.mark.parametrize("text", ["1.2", "v1.2.x", "", "version1", "v-1.0.0"])
def test_semver_rejects_malformed(text):
    with pytest.raises(ValueError, match="not a semantic version"):
        SemVer.parse(text)


def test_versions_follow_data_and_contract_changes(store, trained, frames, cfg):
    contract = feature_contract(cfg)
    first, created = store.register("syn", trained, gates_for(trained, 0.5), lineage_of(frames),
                                    contract=contract, now=T0)
    assert created and first.version == "v1.0.0"
    # the same model again: same id, same version, not new
    again, created_again = store.register("syn", trained, gates_for(trained, 0.5),
                                          lineage_of(frames), contract=contract, now=T0)
    assert (again.model_id, again.version, created_again) == (first.model_id, "v1.0.0", False)
    # new data -> minor
    other = train(synthetic_days(n_days=12, rows=60, seed=5), cfg)
    second, _ = store.register("syn", other, gates_for(other, 0.5), lineage_of(frames, "new"),
                               contract=contract, now=T0)
    assert second.version == "v1.1.0"
    # same data as the newest, other params -> patch
    retuned = train(synthetic_days(n_days=12, rows=60, seed=5),
                    config(training={"window_days": 12, "validation_days": 3,
                                     "params": {**TRAIN_PARAMS, "num_leaves": 5}}))
    third, _ = store.register("syn", retuned, gates_for(retuned, 0.5), lineage_of(frames, "new"),
                              contract=contract, now=T0)
    assert third.version == "v1.1.1"
    # a feature contract change -> major
    changed = {**contract, "numeric": ["x1"]}
    fourth, _ = store.register("syn", trained, gates_for(trained, 0.55), lineage_of(frames),
                               contract=changed, now=T0)
    assert fourth.version == "v2.0.0"
    assert [v.version for v in store.versions("syn")] == ["v1.0.0", "v1.1.0", "v1.1.1", "v2.0.0"]


def test_concurrent_registrations_never_share_a_version(store, cfg):
    models = [train(synthetic_days(n_days=12, rows=60, seed=s), cfg) for s in range(4)]
    barrier = threading.Barrier(len(models))
    out, errors = [], []

    def register(i, m):
        barrier.wait()
        try:
            out.append(store.register("syn", m, gates_for(m, 0.5),
                                      lineage_of(synthetic_days(2), f"{i}"))[0])
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=register, args=(i, m)) for i, m in enumerate(models)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sorted(v.version for v in out) == ["v1.0.0", "v1.1.0", "v1.2.0", "v1.3.0"]


def test_resolve_by_alias_version_and_id(store, trained, frames):
    v1, _ = store.register("syn", trained, gates_for(trained, 0.5), lineage_of(frames))
    store.move_aliases("syn", set_alias_change("production", v1, {}))
    assert store.resolve("syn", "production").model_id == v1.model_id
    assert store.resolve("syn", "v1.0.0").model_id == v1.model_id
    assert store.resolve("syn", "1.0.0").model_id == v1.model_id
    assert store.resolve("syn", v1.model_id[:8]).model_id == v1.model_id
    with pytest.raises(UnknownModel, match=r"no model 'v9.9.9'.*known: v1.0.0"):
        store.resolve("syn", "v9.9.9")
    with pytest.raises(UnknownModel, match="alias 'previous' is not set"):
        store.resolve("syn", "previous")
    with pytest.raises(UnknownModel, match="no model 'abc'"):
        store.resolve("syn", "abc")  # too short to be a prefix


def test_load_text_round_trip_and_tampering(tmp_path, trained):
    models = ModelStore(LocalStore(str(tmp_path)))
    version, _ = models.register("syn", trained, gates_for(trained, 0.5), {}, now=T0)
    assert models.load_text(version) == trained.model_text
    validation = models.load_validation(version)
    assert len(validation) == trained.validation_rows
    assert list(validation.columns) == ["day", "prediction", "label"]
    (tmp_path / "syn" / version.model_id / "model.txt").write_text(trained.model_text + "\n")
    with pytest.raises(ValueError, match="does not match its recorded sha256"):
        models.load_text(version)


# --- compare-and-swap ---------------------------------------------------------------------------

@pytest.mark.parametrize("backend", ["local", "s3"])
def test_put_if_is_create_only_and_compare_and_swap(backend, tmp_path, request):
    if backend == "local":
        raw = LocalStore(str(tmp_path))
    else:
        raw = S3Store(f"s3://{BUCKET}/cas", request.getfixturevalue("s3_client"))
    etag = raw.put_if("doc.json", b"1", expected=None)
    with pytest.raises(PreconditionFailed):
        raw.put_if("doc.json", b"2", expected=None)  # already exists
    etag2 = raw.put_if("doc.json", b"3", expected=etag)
    with pytest.raises(PreconditionFailed):
        raw.put_if("doc.json", b"4", expected=etag)  # stale
    assert raw.get_versioned("doc.json") == (b"3", etag2)


def _race_promotions(store, pipeline, contenders, champion_id):
    barrier = threading.Barrier(len(contenders))
    wins, conflicts = [], []

    def promote(version):
        barrier.wait()
        try:
            store.move_aliases(pipeline, promote_change(version, champion_id, {}))
            wins.append(version.model_id)
        except AliasConflict:
            conflicts.append(version.model_id)

    threads = [threading.Thread(target=promote, args=(v,)) for v in contenders]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return wins, conflicts


def _three_versions(store, cfg):
    versions = []
    for seed in range(3):
        m = train(synthetic_days(n_days=12, rows=60, seed=seed), cfg)
        versions.append(store.register("syn", m, gates_for(m, 0.5), lineage_of({}, str(seed)))[0])
    return versions


class _HeldWriter:
    """The raw store, but the first conditional write of the holding thread waits until the
    other promotion has finished: the interleaving a race produces, made deterministic."""

    def __init__(self, inner):
        self.inner, self.holder = inner, None
        self.read_done, self.other_done = threading.Event(), threading.Event()

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def put_if(self, *args, **kwargs):
        if threading.current_thread() is self.holder and not self.read_done.is_set():
            self.read_done.set()  # it has read the aliases and is about to write
            assert self.other_done.wait(30)
        return self.inner.put_if(*args, **kwargs)


def test_a_promotion_that_read_stale_aliases_loses(store, cfg):
    """On both backends (S3: a conditional PUT that gets 412): A reads the aliases, B promotes,
    then A writes with what it read and loses, as a conflict naming the move."""
    champion, a, b = _three_versions(store, cfg)
    store.move_aliases("syn", promote_change(champion, None, {}))
    held = _HeldWriter(store.store)
    store.store = held
    outcome = {}

    def promote_a():
        try:
            store.move_aliases("syn", promote_change(a, champion.model_id, {}))
            outcome["a"] = "won"
        except AliasConflict as exc:
            outcome["a"] = str(exc)

    thread = threading.Thread(target=promote_a)
    held.holder = thread
    thread.start()
    assert held.read_done.wait(30)
    store.move_aliases("syn", promote_change(b, champion.model_id, {}))  # B, while A waits
    held.other_done.set()
    thread.join(30)
    assert "production moved from" in outcome["a"], outcome
    state = store.aliases("syn")
    assert (state.model_id("production"), state.model_id("previous")) == (b.model_id,
                                                                          champion.model_id)


def test_two_concurrent_promotions_exactly_one_wins(tmp_path, cfg):
    """Real threads against the local store's file lock. (On S3 the compare-and-swap is the
    server's conditional PUT, which moto's threaded test server does not make atomic: the
    deterministic interleaving above covers S3.)"""
    store = ModelStore(LocalStore(str(tmp_path / "models")))
    champion, a, b = _three_versions(store, cfg)
    store.move_aliases("syn", promote_change(champion, None, {}))
    for _ in range(10):  # ten races, each from the same champion
        wins, conflicts = _race_promotions(store, "syn", [a, b], champion.model_id)
        assert len(wins) == 1 and len(conflicts) == 1, (wins, conflicts)
        state = store.aliases("syn")
        assert state.model_id("production") == wins[0]
        assert state.model_id("previous") == champion.model_id
        # reset for the next race: the champion back in production
        store.move_aliases("syn", set_alias_change("production", champion, {}))


def test_a_reader_never_sees_half_an_alias_move(tmp_path, trained, frames):
    models = ModelStore(LocalStore(str(tmp_path)))
    versions = []
    for i in range(2):
        versions.append(models.register("syn", trained, gates_for(trained, 0.5 + i / 100),
                                        lineage_of(frames, str(i)))[0])
    stop = threading.Event()
    seen, bad = [], []

    def writer():
        i = 0
        while not stop.is_set():
            target, other = versions[i % 2], versions[(i + 1) % 2]
            models.move_aliases("syn", lambda a, t=target, o=other: {
                "production": {"model_id": t.model_id}, "previous": {"model_id": o.model_id}})
            i += 1

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        path = tmp_path / "syn" / "aliases.json"
        deadline = time.monotonic() + 20
        while len(set(seen)) < 30 and time.monotonic() < deadline:
            try:
                doc = json.loads(path.read_text())
            except FileNotFoundError:
                continue
            aliases = doc["aliases"]
            seen.append(doc["generation"])
            if aliases["production"]["model_id"] == aliases["previous"]["model_id"]:
                bad.append(doc)
    finally:
        stop.set()
        thread.join()
    assert len(set(seen)) >= 30  # the writer really moved them while we read
    assert bad == []


# --- audit --------------------------------------------------------------------------------------

def test_audit_is_append_only_under_concurrent_writers(store):
    def write(worker):
        for i in range(15):
            store.append_audit("syn", AuditEntry(action="register", actor=f"w{worker}",
                                                 reason=f"entry {i}", run_id=f"r{worker}-{i}"))

    threads = [threading.Thread(target=write, args=(w,)) for w in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    entries = store.audit("syn")
    assert len(entries) == 45
    assert {e["run_id"] for e in entries} == {f"r{w}-{i}" for w in range(3) for i in range(15)}
    for worker in range(3):  # each writer's entries keep their order
        mine = [int(e["reason"].split()[1]) for e in entries if e["actor"] == f"w{worker}"]
        assert mine == sorted(mine)
    assert set(entries[0]) >= {"time", "pipeline", "actor", "run_id", "action", "from_version",
                               "to_version", "reason", "metrics"}


def test_audit_entry_rejects_unknown_action():
    with pytest.raises(ValueError, match="audit action must be one of"):
        AuditEntry(action="delete", actor="me", reason="x")


def test_unknown_alias_is_refused(tmp_path):
    models = ModelStore(LocalStore(str(tmp_path)))
    with pytest.raises(ValueError, match="unknown alias 'prod'"):
        models.move_aliases("syn", lambda a: {"prod": {"model_id": "x"}})
