"""Post a cleanup run's summary as Slack-compatible JSON (`{"text": ...}`) to a webhook.

Off unless BRAKET_CLEANUP_WEBHOOK_URL is set. A failed post is logged and never raised: the
cleanup and its audit matter more than the message about them.
"""

from __future__ import annotations

import json
import logging
import os
import urllib.error
import urllib.request
from collections.abc import Callable

WEBHOOK_ENV = "BRAKET_CLEANUP_WEBHOOK_URL"
MAX_ARNS = 50  # per policy and outcome in one message; the audit has them all

log = logging.getLogger(__name__)


def webhook_url(environ=None) -> str | None:
    value = (environ if environ is not None else os.environ).get(WEBHOOK_ENV, "").strip()
    return value or None


def summary_text(run_id: str, policies: list[dict]) -> str:
    """policies: [{policy, mode, counts: {outcome: n}, arns: {outcome: [arn]}, errors: [str],
    breach: str | None}]"""
    lines = [f"*braket-warehouse cleanup* run `{run_id}`"]
    for item in policies:
        counts = ", ".join(f"{k} {v}" for k, v in sorted(item["counts"].items())) or "nothing"
        lines.append(f"• policy *{item['policy']}* ({item['mode']}): {counts}")
        if item.get("breach"):
            lines.append(f"  :warning: limit exceeded, nothing cancelled: {item['breach']}")
        for outcome, arns in sorted(item.get("arns", {}).items()):
            shown = arns[:MAX_ARNS]
            more = f" and {len(arns) - len(shown)} more" if len(arns) > len(shown) else ""
            lines.append(f"  {outcome}: " + ", ".join(shown) + more)
        for error in item.get("errors", [])[:10]:
            lines.append(f"  error: {error}")
    return "\n".join(lines)


def post(
    text: str,
    url: str | None = None,
    timeout: float = 5.0,
    warn: Callable[[str], None] | None = None,
) -> bool:
    """POST {"text": text}; True when the receiver answered 2xx. Never raises."""
    url = url or webhook_url()
    if not url:
        return False
    warn = warn or log.warning
    body = json.dumps({"text": text}).encode()
    try:
        # Inside the try: Request() raises ValueError on a URL it cannot read ("not a url").
        request = urllib.request.Request(
            url, data=body, method="POST", headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read()
        return True
    except urllib.error.HTTPError as exc:
        warn(f"cleanup notification failed: the webhook answered HTTP {exc.code}")
    except Exception as exc:  # noqa: BLE001 - a notification must never fail the cleanup
        warn(f"cleanup notification failed: {type(exc).__name__}: {exc}")
    return False
