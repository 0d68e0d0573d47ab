"""The IAM policy document in deploy/iam: valid JSON, one bucket, only the `tables/` and `models/`
prefixes, the conditional-write and SSE needs, nothing broader."""

from __future__ import annotations

import json

from ml_assets_tests.helpers import REPO

POLICY = REPO / "deploy" / "iam" / "ml-assets-policy.json"
BUCKET = "arn:aws:s3:::ml-assets-prod"
PREFIXES = {f"{BUCKET}/tables/*", f"{BUCKET}/models/*"}


def policy() -> dict:
    return json.loads(POLICY.read_text())  # fails here if it is not valid JSON


def _statements() -> dict[str, dict]:
    return {s["Sid"]: s for s in policy()["Statement"]}


def _list(value) -> list:
    return value if isinstance(value, list) else [value]


def test_policy_is_a_valid_iam_document():
    doc = policy()
    assert doc["Version"] == "2012-10-17"
    sids = [s["Sid"] for s in doc["Statement"]]
    assert len(sids) == len(set(sids))
    for s in doc["Statement"]:
        assert s["Effect"] in ("Allow", "Deny") and s["Action"] and s["Resource"]


def test_objects_only_under_tables_and_models_of_one_bucket():
    s = _statements()
    rw = s["ReadAndConditionallyWriteTablesAndModels"]
    assert set(_list(rw["Resource"])) == PREFIXES
    assert {"s3:GetObject", "s3:PutObject"} <= set(rw["Action"])
    listing = s["ListOnlyThePlatformPrefixes"]
    assert listing["Resource"] == BUCKET and listing["Action"] == "s3:ListBucket"
    assert set(listing["Condition"]["StringLike"]["s3:prefix"]) == {
        "tables", "tables/*", "models", "models/*"}
    for stmt in policy()["Statement"]:
        for resource in _list(stmt["Resource"]):
            if resource.startswith("arn:aws:s3"):
                assert resource.startswith(BUCKET), resource


def test_nothing_broader_than_needed_is_allowed():
    for stmt in policy()["Statement"]:
        if stmt["Effect"] != "Allow":
            continue
        actions = _list(stmt["Action"])
        assert not any(a.endswith("*") for a in actions), stmt["Sid"]
        assert "s3:DeleteObject" not in actions
        assert all(r != "*" for r in _list(stmt["Resource"]))


def test_server_side_encryption_and_kms_needs():
    s = _statements()
    deny = s["DenyWritesWithAnotherEncryption"]
    assert deny["Effect"] == "Deny" and deny["Action"] == "s3:PutObject"
    assert deny["Condition"]["StringNotEqualsIfExists"]["s3:x-amz-server-side-encryption"] == [
        "AES256", "aws:kms"]
    kms = s["UseTheSseKmsKeyOnlyThroughS3"]
    assert set(kms["Action"]) == {"kms:GenerateDataKey", "kms:Decrypt"}
    assert kms["Condition"]["StringEquals"]["kms:ViaService"].startswith("s3.")
    assert s["DenyPlainHttp"]["Condition"]["Bool"]["aws:SecureTransport"] == "false"
