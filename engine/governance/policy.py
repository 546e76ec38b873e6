"""Policy as code: Rego policies evaluated with regopy (Microsoft's rego-cpp) where data is
read.

The engine's own policy (``policies/insight.rego``) and the project's files
(``governance.policy``) are compiled once into a bundle; each use of personal data asks
``data.insight.governance`` with an input naming the action, the purpose, the PII columns
and the caller's role, and gets back whether it is allowed, why not (``deny``), and the
obligations to enforce (consent for a purpose, columns to hash, drop or mask). Decisions
depend only on that input, never on row values, so they are cached per input: a served
request pays a dictionary lookup, not an evaluation. A decision without ``allow: true``
(undefined, malformed, an error) is a denial.

Why regopy: it evaluates OPA's language (Rego v1) in process from a PyPI wheel, maintained
by Microsoft. Rejected: the OPA server (no binary from the package registries here),
opa-wasm (last release 2022; it needs OPA to compile the policy), gordon-to-regorus (an
unofficial fork), cedarpy (Cedar: authorisation only, no obligations to return).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.errors import ConfigError

ENGINE_POLICIES = Path(__file__).resolve().parent / "policies"
QUERY = "data.insight.governance"
_ERROR = re.compile(r"\(error \d+:([^|\s]+)\|(\d+)\|(\d+)")
_MSG = re.compile(r"\(errormsg \d+:([^)\n]*)\)")


@dataclass(frozen=True)
class Decision:
    """One policy decision: allowed or not, why not, and the obligations to enforce."""

    allow: bool
    deny: tuple[str, ...] = ()
    obligations: tuple[dict[str, Any], ...] = ()
    policy_version: str = ""

    def consent_purposes(self) -> list[str]:
        return sorted({str(o["purpose"]) for o in self.obligations if o.get("kind") == "consent"})

    def columns(self, kind: str) -> list[str]:
        """Columns an obligation of ``kind`` (hash, drop, mask) names."""
        return sorted({str(o["column"]) for o in self.obligations if o.get("kind") == kind})

    def reason(self) -> str:
        if self.allow:
            return "allowed"
        return "; ".join(self.deny) or "no policy rule allows it (default deny)"


@dataclass
class PolicySet:
    """Compiled policy files and the data they read; ``decide`` is thread-safe."""

    files: dict[str, str]
    data: dict[str, Any]
    version: str = ""
    _bundle: Any = None
    _rego: Any = None
    _cache: dict[str, Decision] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def load(cls, extra: str | Path | None = None, data: dict[str, Any] | None = None) -> PolicySet:
        """The engine's policy plus ``extra`` (a .rego file or a folder of them). A file that
        does not parse is a :class:`ConfigError` naming it, its line and what is wrong."""
        files = {
            p.name: p.read_text(encoding="utf-8") for p in sorted(ENGINE_POLICIES.glob("*.rego"))
        }
        if extra is not None:
            ep = Path(extra)
            found = sorted(ep.glob("*.rego")) if ep.is_dir() else [ep] if ep.is_file() else []
            if not found:
                raise ConfigError(
                    f"governance.policy: no .rego file at '{ep}'. Fix: point it at a Rego "
                    "file or a folder holding some."
                )
            for p in found:
                files[f"project/{p.name}"] = p.read_text(encoding="utf-8")
        ps = cls(files, {"insight": data or {}})
        ps._compile()
        return ps

    def _compile(self) -> None:
        from regopy import Interpreter
        from regopy.rego_shared import RegoError

        blob = json.dumps({"files": self.files, "data": self.data}, sort_keys=True).encode()
        self.version = hashlib.sha256(blob).hexdigest()[:16]
        rego = Interpreter()
        try:
            with _quiet():  # rego-cpp also prints its errors to stdout
                for name, text in self.files.items():
                    rego.add_module(name, text)
                rego.add_data_json(json.dumps(self.data))
                self._bundle = rego.build(QUERY)
        except RegoError as exc:
            raise ConfigError(_explain(str(exc), self.files)) from None
        self._rego = rego

    def decide(self, action: str, purpose: str, **facts: Any) -> Decision:
        """The decision for one use (cached per input)."""
        inp = {"action": action, "purpose": purpose, **facts}
        key = json.dumps(inp, sort_keys=True, default=str)
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        with self._lock:  # the interpreter holds one input at a time
            d = self._evaluate(inp)
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[key] = d
        return d

    def document(self, action: str, purpose: str, **facts: Any) -> dict[str, Any]:
        """The whole decision document for one input (what ``decide`` reads, and any other
        rule a policy sets, such as ``retention``); ``{}`` where it decides nothing."""
        from regopy.rego_shared import RegoError

        with self._lock:
            try:
                self._rego.set_input({"action": action, "purpose": purpose, **facts})
                doc = json.loads(str(self._rego.query_bundle(self._bundle)))["expressions"][0]
            except (RegoError, ValueError, KeyError, IndexError, TypeError):
                return {}
        return doc if isinstance(doc, dict) else {}

    def evaluate_uncached(self, action: str, purpose: str, **facts: Any) -> Decision:
        """One evaluation, bypassing the cache (what the benchmark measures)."""
        with self._lock:
            return self._evaluate({"action": action, "purpose": purpose, **facts})

    def _evaluate(self, inp: dict[str, Any]) -> Decision:
        from regopy.rego_shared import RegoError

        try:
            self._rego.set_input(inp)
            out = json.loads(str(self._rego.query_bundle(self._bundle)))
            doc = out["expressions"][0]
        except (RegoError, ValueError, KeyError, IndexError, TypeError) as exc:
            return Decision(
                False, (f"the policy gave no decision ({exc!s:.200})",), (), self.version
            )
        if not isinstance(doc, dict):
            return Decision(False, ("the policy gave no decision",), (), self.version)
        deny = tuple(str(x) for x in doc.get("deny") or [])
        obligations = tuple(o for o in doc.get("obligations") or [] if isinstance(o, dict))
        return Decision(doc.get("allow") is True, deny, obligations, self.version)


def _explain(err: str, files: dict[str, str]) -> str:
    """A rego-cpp error as 'file line N: message'."""
    m, msg = _ERROR.search(err), _MSG.search(err)
    what = msg.group(1).strip() if msg else err.strip().splitlines()[0][:200]
    if not m:
        return f"the governance policy does not compile: {what}"
    name, offset = m.group(1), int(m.group(2))
    text = files.get(name) or next((t for n, t in files.items() if n.endswith(name)), "")
    line = text[:offset].count("\n") + 1
    shown = text.splitlines()[line - 1].strip() if text else ""
    return (
        f"policy file {name}, line {line}: {what} (`{shown}`). Fix the Rego there; nothing was run."
    )


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Send file descriptor 1 to /dev/null for the duration (rego-cpp writes errors there)."""
    import sys

    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 1)
            yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)


def policy_data(cfg: Any) -> dict[str, Any]:
    """What the policy reads of a project file (data.insight)."""
    gov = getattr(cfg, "governance", None)
    if gov is None:
        from engine.config.governance import GovernanceConfig

        gov = GovernanceConfig()
    return {
        "purposes": gov.purposes.model_dump(),
        "consent_declared": gov.consent is not None,
        "retention": dict(gov.retention),
        "erasure": {
            "retrain": gov.erasure.retrain,
            "legal_hold": list(gov.erasure.legal_hold),
        },
    }
