"""Governance across the engine: consent by purpose, policy as code (Rego), and the
records a regulator checks. See engine.governance.consent and engine.governance.policy."""
