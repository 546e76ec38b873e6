# The engine's own policy: what each use of personal data may do, and on what conditions
# (obligations the engine enforces where it reads the data). A project adds rules in files
# of its own (governance.policy in insight.yaml), in this package or beside it: a `deny`
# rule of theirs forbids, an `obligations` rule adds a condition. A use no rule allows is
# denied (default deny).
#
# input: {"action": one of `uses`, "purpose": the purpose it serves, "pii": [columns marked
#         PII], "sensitive": [sensitive attributes], "role": the caller's role or null}
# data.insight: {"purposes": {use: purpose} from governance.purposes,
#                "consent_declared": whether a consent source is declared}
package insight.governance

import rego.v1

uses := {"snapshot", "train", "serve", "score", "target", "export"}

default allow := false

allow if {
	input.action in uses
	count(deny) == 0
}

declared contains p if some p in data.insight.purposes

deny contains msg if {
	not input.purpose in declared
	msg := sprintf("purpose %v is not one the project declares (governance.purposes: %v)", [input.purpose, declared])
}

deny contains msg if {
	not input.action in uses
	msg := sprintf("action %v is not a use of personal data the engine knows (%v)", [input.action, uses])
}

# Each use for a purpose needs the subject's consent to it, as of the row's time (a label
# time, a request time): rows without it are left out, requests without it get no
# automated decision.
obligations contains {"kind": "consent", "purpose": input.purpose} if data.insight.consent_declared

# Identifiers marked PII are hashed (keyed) before they reach features, logs or exports.
obligations contains {"kind": "hash", "column": c} if some c in input.pii

# How long each class of data is kept (governance.retention; a project's rule may set
# retention[class] itself): engine.governance.retention deletes what is older.
retention[c] := d if some c, d in data.insight.retention

# Erasure (engine.governance.erase): what is done with a model trained on an erased subject
# ("now": a retrain is requested; "next_training": the next scheduled training), and which
# snapshots a legal hold keeps as they are (governance.erasure; a project's rule may set
# erasure.retrain or erasure.legal_hold itself).
erasure["retrain"] := data.insight.erasure.retrain

erasure["legal_hold"] := data.insight.erasure.legal_hold
