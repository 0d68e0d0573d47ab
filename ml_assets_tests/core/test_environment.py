from __future__ import annotations

import dagster as dg
import pytest

from ml_assets.environment import EnvironmentError_, settings_from_env


def test_defaults_are_local_folders(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    s = settings_from_env({})
    assert s.env == "development"
    assert s.tables_root == str((tmp_path / ".data" / "tables").resolve())
    assert s.models_root == str((tmp_path / ".data" / "models").resolve())
    assert s.s3_endpoint_url is None and s.s3_region is None


def test_local_paths_from_env(tmp_path):
    s = settings_from_env({"DATA_PATH": str(tmp_path / "t"), "MODEL_PATH": str(tmp_path / "m"),
                           "ENV": "staging"})
    assert (s.env, s.tables_root, s.models_root) == ("staging", str(tmp_path / "t"),
                                                      str(tmp_path / "m"))


@pytest.mark.parametrize("env", ["development", "staging", "production"])
def test_s3_bucket_gives_s3_roots(env):
    s = settings_from_env({"ENV": env, "S3_BUCKET": " my-bucket ", "AWS_ENDPOINT_URL":
                           "http://minio:9000", "AWS_REGION": "eu-west-1",
                           "DATA_PATH": "/ignored"})
    assert s.env == env
    assert s.tables_root == "s3://my-bucket/tables"
    assert s.models_root == "s3://my-bucket/models"
    assert s.s3_endpoint_url == "http://minio:9000"
    assert s.s3_region == "eu-west-1"


def test_region_falls_back_to_aws_default_region():
    assert settings_from_env({"AWS_DEFAULT_REGION": "us-west-2"}).s3_region == "us-west-2"


@pytest.mark.parametrize("bucket", [None, "", "   "])
def test_production_without_bucket_raises(bucket):
    environ = {"ENV": "production"} if bucket is None else {"ENV": "production", "S3_BUCKET": bucket}
    with pytest.raises(EnvironmentError_, match="ENV=production needs S3_BUCKET"):
        settings_from_env(environ)


@pytest.mark.parametrize("env", ["bogus", "prod", "Production"])
def test_unknown_env_raises_naming_allowed_values(env):
    with pytest.raises(EnvironmentError_) as info:
        settings_from_env({"ENV": env})
    msg = str(info.value)
    assert "['development', 'staging', 'production']" in msg
    assert repr(env) in msg


@pytest.mark.parametrize("bucket", ["s3://x", "x/prefix"])
def test_bucket_with_scheme_or_slash_raises(bucket):
    with pytest.raises(EnvironmentError_, match="S3_BUCKET is a bucket name") as info:
        settings_from_env({"S3_BUCKET": bucket})
    assert repr(bucket) in str(info.value)


def test_reads_os_environ_when_no_mapping_given(monkeypatch):
    monkeypatch.setenv("ENV", "staging")
    monkeypatch.setenv("S3_BUCKET", "from-os")
    assert settings_from_env().tables_root == "s3://from-os/tables"


@pytest.mark.parametrize("env,sse,key", [
    ({}, "AES256", None),
    ({"S3_SSE": "none"}, None, None),
    ({"S3_SSE_KMS_KEY_ID": "alias/ml"}, "aws:kms", "alias/ml"),
    ({"S3_SSE": "aws:kms", "S3_SSE_KMS_KEY_ID": "k"}, "aws:kms", "k"),
])
def test_server_side_encryption_settings(env, sse, key):
    s = settings_from_env(env)
    assert (s.s3_sse, s.s3_kms_key_id) == (sse, key)


@pytest.mark.parametrize("env,message", [
    ({"S3_SSE": "rot13"}, "S3_SSE must be AES256, aws:kms or none, found 'rot13'"),
    ({"S3_SSE": "AES256", "S3_SSE_KMS_KEY_ID": "k"}, "S3_SSE_KMS_KEY_ID is set but S3_SSE is 'AES256'"),
    ({"ALERT_WEBHOOK_URL": "hooks.slack.com/x"}, "ALERT_WEBHOOK_URL must be an http(s) URL"),
])
def test_bad_encryption_or_webhook_settings_name_the_variable(env, message):
    with pytest.raises(EnvironmentError_, match=message.replace("(", r"\(").replace(")", r"\)")):
        settings_from_env(env)


def test_webhook_url_reaches_the_alerts_resource_as_an_env_var_reference(monkeypatch):
    from ml_assets.definitions import alerts_for

    monkeypatch.setenv("ALERT_WEBHOOK_URL", "https://hooks.example.com/T/B/x")
    resource = alerts_for(settings_from_env())
    # a reference, resolved when a run or sensor starts: the UI never shows the secret
    assert isinstance(resource.webhook_url, dg.EnvVar)
    assert resource.webhook_url.env_var_name == "ALERT_WEBHOOK_URL"
    assert alerts_for(settings_from_env({})).webhook_url is None
