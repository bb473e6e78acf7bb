"""Policy files (SPEC §2): YAML -> validated ``jitgate.domain.policy.Policy``.

Invariants: loading never reads the environment or any file but the given
one(s) (besides the installed plugins' metadata, to check channels and backends);
every problem is reported with its file, line and key path; a policy is returned
only when it has no problem.
"""

from jitgate.adapters.policy.load import (
    CheckedPolicy,
    check_policy,
    check_policy_text,
    guarded,
    load_policy,
    load_policy_text,
)
from jitgate.adapters.policy.problems import PolicyError, PolicyProblem

__all__ = [
    "CheckedPolicy",
    "PolicyError",
    "PolicyProblem",
    "check_policy",
    "check_policy_text",
    "guarded",
    "load_policy",
    "load_policy_text",
]
