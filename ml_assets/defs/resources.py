"""Typed resources: storage (one local folder or S3 prefix for tables, one for models) and the
alert notifier."""

import logging
from typing import Any

import dagster as dg
from dagster_aws.s3 import S3Resource
from pydantic import Field, PrivateAttr

from ml_assets.core.alerts import Alert, Notifier
from ml_assets.core.registry import ModelStore
from ml_assets.core.storage import LocalStore, ObjectStore, S3Store


class StorageResource(dg.ConfigurableResource):
    """Where tables and models are stored: a local path or `s3://bucket/prefix` each.

    S3 access goes through dagster-aws's `S3Resource`; credentials come from the standard AWS
    chain (environment, profile, instance role), never from code or config.
    """

    tables_root: str = Field(description="Local folder or s3://bucket/prefix for Parquet tables.")
    models_root: str = Field(description="Local folder or s3://bucket/prefix for model files.")
    s3_endpoint_url: str | None = Field(
        default=None, description="Custom S3 endpoint (MinIO, moto); empty for AWS."
    )
    s3_region: str | None = Field(default=None, description="AWS region for S3.")
    s3_sse: str | None = Field(
        default="AES256",
        description="Server-side encryption of every S3 write: AES256 (SSE-S3), aws:kms, or none.")
    s3_kms_key_id: str | None = Field(default=None, description="KMS key id for aws:kms.")

    _client: Any = PrivateAttr(default=None)

    def s3_client(self) -> Any:
        if self._client is None:
            self._client = S3Resource(
                endpoint_url=self.s3_endpoint_url, region_name=self.s3_region
            ).get_client()
        return self._client

    def _store(self, root: str) -> ObjectStore:
        if root.startswith("s3://"):
            return S3Store(root, self.s3_client(), sse=self.s3_sse, kms_key_id=self.s3_kms_key_id)
        return LocalStore(root)

    def tables(self) -> ObjectStore:
        return self._store(self.tables_root)

    def models(self) -> ModelStore:
        return ModelStore(self._store(self.models_root))

    def client_for(self, *uris: str) -> Any:
        """An S3 client when any of `uris` is on S3, else None (local paths need none)."""
        return self.s3_client() if any(u.startswith("s3://") for u in uris) else None


class AlertsResource(dg.ConfigurableResource):
    """Where alerts go: always the log; a Slack-compatible webhook when `webhook_url` is set
    (from the environment variable ALERT_WEBHOOK_URL). A dead webhook never fails a run."""

    webhook_url: str | None = Field(default=None, description="Slack-compatible webhook URL.")
    timeout_seconds: float = Field(default=3.0, description="Webhook request timeout.")

    def send(self, alert: Alert, log: Any = None) -> bool:
        """`log`: a Dagster logger (context.log) to record the alert in the run's logs too."""
        logger = log if isinstance(log, logging.Logger) else None
        if log is not None and logger is None:
            log.info(f"alert: {alert.line()}")
        return Notifier(self.webhook_url, self.timeout_seconds, logger).send(alert)
