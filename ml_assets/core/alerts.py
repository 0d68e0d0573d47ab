"""Alerts: always to the log; to a webhook (Slack-compatible JSON) when one is configured.

Fired on drift at ERROR, a rejected challenger, a promotion, a rollback and a failed run. A
webhook that is down, slow or answers an error never fails the caller: the failure is logged
and `send` returns False.
"""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from dataclasses import dataclass, field

LOG = logging.getLogger("ml_assets.alerts")
EVENTS = ("drift", "performance", "reject", "promote", "rollback", "run_failure", "canary")
_ICONS = {"info": ":information_source:", "warning": ":warning:", "error": ":rotating_light:"}


@dataclass(frozen=True)
class Alert:
    event: str
    pipeline: str
    title: str
    text: str = ""
    level: str = "info"  # info | warning | error
    fields: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.event not in EVENTS:
            raise ValueError(f"alert event must be one of {list(EVENTS)}, found {self.event!r}")
        if self.level not in _ICONS:
            raise ValueError(f"alert level must be one of {list(_ICONS)}, found {self.level!r}")

    def line(self) -> str:
        extra = " ".join(f"{k}={v}" for k, v in self.fields.items())
        return f"[{self.level.upper()}] {self.pipeline} {self.event}: {self.title}" + (
            f" - {self.text}" if self.text else "") + (f" ({extra})" if extra else "")

    def slack_payload(self) -> dict:
        """Slack incoming-webhook JSON: `text` for any receiver, `blocks` for Slack."""
        heading = f"{_ICONS[self.level]} *{self.pipeline}* {self.event}: {self.title}"
        blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": heading}}]
        if self.text:
            blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": self.text[:2900]}})
        if self.fields:
            blocks.append({"type": "section", "fields": [
                {"type": "mrkdwn", "text": f"*{k}*\n{v}"} for k, v in list(self.fields.items())[:10]]})
        return {"text": self.line()[:3000], "blocks": blocks,
                "ml_assets": {"event": self.event, "pipeline": self.pipeline, "level": self.level,
                              "title": self.title, "fields": self.fields}}


class Notifier:
    def __init__(self, webhook_url: str | None = None, timeout: float = 3.0,
                 logger: logging.Logger | None = None):
        self.webhook_url = webhook_url or None
        self.timeout = timeout
        self.log = logger or LOG

    def send(self, alert: Alert) -> bool:
        """Log the alert; post it to the webhook if one is set. True when the webhook took it."""
        log = self.log.error if alert.level == "error" else (
            self.log.warning if alert.level == "warning" else self.log.info)
        log("alert: %s", alert.line())
        if not self.webhook_url:
            return False
        body = json.dumps(alert.slack_payload()).encode()
        request = urllib.request.Request(self.webhook_url, data=body, method="POST",
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                ok = 200 <= response.status < 300
        except (urllib.error.URLError, OSError, ValueError) as exc:
            self.log.warning("alert webhook failed (%s); the alert is only in the log", exc)
            return False
        if not ok:
            self.log.warning("alert webhook answered HTTP %s; the alert is only in the log",
                             response.status)
        return ok
