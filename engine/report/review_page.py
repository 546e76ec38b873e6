"""The reviewer's page of the live dashboard (``/review``): the oldest decision in the human
review queue (engine.governance.review) with its inputs, score, decision and explanation,
a form to confirm or dispute it (a dispute needs a reason), and the dispute rate so far
with its 95% interval.

Only a named token whose role is reviewer or above opens it (``insight tokens add --name
ana --role reviewer``): in ``Authorization: Bearer ...``, or ``?token=...`` once, which sets
an HttpOnly, SameSite=Strict cookie. Each verdict is recorded as the CLI records it: an
audit record naming the token's holder. The form carries a value derived from the token
(HMAC), checked on submit, so another site cannot post a verdict in the reviewer's name.
"""

from __future__ import annotations

import hashlib
import hmac
from html import escape
from typing import Any

from engine.workspace import Workspace


def form_key(token: str) -> str:
    """The value the form carries (and a submit must return): bound to the token."""
    return hmac.new(token.encode("utf-8", "surrogateescape"), b"insight-review-form",
                    hashlib.sha256).hexdigest()  # fmt: skip


def _num(v: Any) -> str:
    if v is None:
        return "<em>missing</em>"
    return f"{v:.4g}" if isinstance(v, float) else escape(str(v))


def review_page(ws: Workspace, reviewer: str, token: str, note: str = "") -> bytes:
    from engine.governance.review import next_item, stats

    it = next_item(ws)
    st = stats(ws)
    rate = st["dispute_rate"]
    rate_s = (
        f"{rate['estimate']:.1%} (95% interval {rate['low']:.1%} to {rate['high']:.1%})"
        if isinstance(rate, dict)
        else escape(str(rate))
    )
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        "<title>Review queue - Insight Engine</title>",
        "<style>body{font:15px/1.45 system-ui,sans-serif;max-width:60rem;margin:2rem auto;"
        "padding:0 1rem;color:#111}table{border-collapse:collapse}td,th{padding:.2rem .6rem;"
        "border-bottom:1px solid #ddd;text-align:left}.note{background:#eef6ee;padding:.5rem}"
        "label{margin-right:1rem}textarea{width:100%;min-height:4rem}</style></head><body>",
        "<main><h1>Review queue</h1>",
        f"<p>Reviewer: <strong>{escape(reviewer)}</strong>. Reviewed {st['reviewed']}, "
        f"disputed {st['disputed']}, pending {st['pending']}. Dispute rate: {rate_s}.</p>",
    ]
    if note:
        parts.append(f"<p class='note' role='status'>{escape(note)}</p>")
    if it is None:
        parts.append("<p>The queue is empty: nothing to review.</p>")
    else:
        exp = it.get("explanation") or {}
        shap = exp.get("shap") or {}
        top = sorted(shap.items(), key=lambda kv: -abs(float(kv[1])))[:8]
        parts += [
            f"<h2>Item {escape(str(it['item']))}</h2>",
            f"<p>Why sampled: {escape(str(it.get('why')))}. Model {escape(str(it.get('model')))}"
            f" v{escape(str(it.get('version')))}; score {_num(it.get('score'))} against "
            f"threshold {_num(it.get('threshold'))}: decision "
            f"<strong>{'yes' if it.get('decision') else 'no'}</strong>.</p>",
            "<h3>Inputs</h3><table><thead><tr><th scope='col'>Feature</th>"
            "<th scope='col'>Value</th></tr></thead><tbody>",
            *[
                f"<tr><td>{escape(str(k))}</td><td>{_num(v)}</td></tr>"
                for k, v in (it.get("inputs") or {}).items()
            ],
            "</tbody></table>",
            "<h3>Explanation</h3>",
            "<p>No explanation could be recomputed.</p>"
            if not top
            else "<table><thead><tr><th scope='col'>Feature</th><th scope='col'>SHAP "
            "(log-odds)</th></tr></thead><tbody>"
            + "".join(f"<tr><td>{escape(k)}</td><td>{float(v):+.4f}</td></tr>" for k, v in top)
            + "</tbody></table>",
            "<h3>Verdict</h3>",
            "<form method='post' action='/review'>",
            f"<input type='hidden' name='item' value='{escape(str(it['item']))}'>",
            f"<input type='hidden' name='form_key' value='{form_key(token)}'>",
            "<fieldset><legend>Is the decision right?</legend>",
            "<label><input type='radio' name='verdict' value='confirm' required> Confirm</label>",
            "<label><input type='radio' name='verdict' value='dispute'> Dispute</label>",
            "</fieldset>",
            "<p><label for='reason'>Reason (needed for a dispute)</label>",
            "<textarea id='reason' name='reason' maxlength='2000'></textarea></p>",
            "<p><button type='submit'>Record the verdict</button></p></form>",
        ]
    parts.append("</main></body></html>")
    return "".join(parts).encode()


def reviewer_of(ws: Workspace, path: str, headers: Any) -> tuple[int, str, str, str | None]:
    """(status, the holder or what is wrong, the token, a cookie to set) of a request to
    the review page: the token from ``?token=``, the Bearer header or the cookie."""
    from urllib.parse import parse_qs, urlparse

    from engine.governance.roles import Role, holder, load_tokens

    q = parse_qs(urlparse(path).query).get("token", [None])[0]
    auth = headers.get("Authorization", "") or ""
    cookies = (headers.get("Cookie", "") or "").split("; ")
    held = [c.split("=", 1)[1] for c in cookies if c.startswith("insight_reviewer=")]
    tok = q or (auth[7:] if auth.startswith("Bearer ") else None) or (held[0] if held else None)
    if not tok:
        return (
            401,
            (
                "the review page needs a reviewer's token: Authorization: Bearer <token>, or "
                "?token=<token> once (insight tokens add --name NAME --role reviewer)"
            ),
            "",
            None,
        )
    who = holder(load_tokens(ws.root), tok)
    if who is None:
        return 401, "unknown token: it is not one of this workspace's named tokens", "", None
    if who[1] < Role.REVIEWER:
        return (
            403,
            (
                f"{who[0]} is a {who[1].name.lower()}: the review page needs the role reviewer "
                "or above"
            ),
            "",
            None,
        )
    return 200, who[0], tok, tok if q else None


def answer(
    ws: Workspace, path: str, headers: Any, posted: bytes | None
) -> tuple[int, str, bytes, str | None]:
    """A GET (``posted`` None) or a POST of a verdict (a form, at most 16 KiB) to
    ``/review``: status, content type, body, cookie. A verdict is recorded as ``insight
    review confirm`` or ``insight review dispute`` records it."""
    from urllib.parse import parse_qs

    from engine.errors import InsightError
    from engine.governance.review import record

    code, who, tok, cookie = reviewer_of(ws, path, headers)
    if code != 200:
        return code, "text/plain; charset=utf-8", (who + "\n").encode(), None
    if posted is not None and len(posted) > 16_384:
        return 413, "text/plain; charset=utf-8", b"the form is larger than 16 KiB\n", None
    note = ""
    if posted is not None:
        form = {k: v[0] for k, v in parse_qs(posted.decode("utf-8", "replace")).items()}
        if not hmac.compare_digest(form.get("form_key", ""), form_key(tok)):
            return (
                403,
                "text/plain; charset=utf-8",
                b"the form's key does not match the token\n",
                None,
            )
        item, verdict = form.get("item", ""), form.get("verdict", "")
        try:
            record(ws, item, verdict, who, form.get("reason", ""))
        except InsightError as exc:
            return (
                400,
                "text/html; charset=utf-8",
                review_page(ws, who, tok, f"not recorded: {exc}"),
                cookie,
            )
        note = f"{item}: {verdict} recorded, by {who}"
    return 200, "text/html; charset=utf-8", review_page(ws, who, tok, note), cookie
