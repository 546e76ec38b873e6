"""E-mail over SMTP (``smtplib``): one message per notification; optional STARTTLS and
login with credentials from the environment."""

from __future__ import annotations

import smtplib
import time
from email.message import EmailMessage
from typing import Any

from engine.config.monitor import EmailSink
from engine.monitor.sinks._http import SinkError, secret


def message(cfg: EmailSink, note: dict[str, Any]) -> EmailMessage:
    m = EmailMessage()
    state = "FIRING" if note["action"] == "trigger" else "RESOLVED"
    what = note.get("slice") or "model"
    if len(what) > 60:
        what = f"{len(note.get('alerts') or [])} slices"
    m["Subject"] = f"[insight] {state}: {note['rule']} ({what}, {note['version']})"
    m["From"] = cfg.mail_from
    m["To"] = ", ".join(cfg.mail_to)
    m["X-Insight-Dedup-Key"] = note["dedup_key"]
    head = [note["summary"]]
    if note.get("first_step"):
        head.append(f"First: {note['first_step']}")
    if note.get("link"):
        head.append(f"Report: {note['link']}")
    m.set_content(
        "\n".join(head)
        + "\n\n"
        + "\n".join(
            f"{k}: {v}"
            for k, v in sorted(note.items())
            if k not in ("summary", "first_step", "link")
        )
    )
    return m


def send(cfg: EmailSink, note: dict[str, Any]) -> None:
    import os

    port = int(os.environ.get(cfg.smtp_port_env or "") or cfg.smtp_port)
    attempt = 0
    while True:
        try:
            with smtplib.SMTP(cfg.smtp_host, port, timeout=cfg.timeout_s) as s:
                if cfg.smtp_starttls:
                    s.starttls()
                if cfg.smtp_user_env:
                    s.login(
                        secret(cfg.smtp_user_env, "email"), secret(cfg.smtp_password_env, "email")
                    )
                s.send_message(message(cfg, note))
            return
        except smtplib.SMTPResponseException as exc:
            retryable = 400 <= exc.smtp_code < 500  # 4xx: transient; 5xx: permanent
            err = SinkError(f"smtp answered {exc.smtp_code}", retryable)
        except (OSError, smtplib.SMTPException) as exc:
            err = SinkError(f"smtp unreachable ({type(exc).__name__})", True)
        if not err.retryable or attempt >= cfg.retries:
            raise err
        time.sleep(cfg.backoff_s * (2**attempt))
        attempt += 1
