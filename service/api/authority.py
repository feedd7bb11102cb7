"""Who may approve what: the policy's authority ladder applied to an API key.

DESIGN.md, business case 8: the front line acts up to a limit; above it a manager, then a
director must approve, and ending a relationship always needs ``guardrails.end_requires``. The
batch has already written the tier each recommendation needs (``approval_tier``); this module
only compares it with the key's ``authority`` on the policy's ladder (lowest first), so the API
and the web page apply one rule:

- a key below role ``agent`` (a viewer) approves nothing;
- a key without ``authority`` approves nothing;
- otherwise it approves every tier at or below its own on the ladder. A key whose authority is
  not a tier of the policy approves nothing (it is logged, not guessed).

The approvals queue holds every recommendation in force whose tier is above the lowest rung
(the front line acts on the rest without anyone's approval).
"""

from __future__ import annotations

import logging

from model.policy import Policy
from service.api.keys import ApiKeyEntry, Role

logger = logging.getLogger(__name__)


def tiers(policy: Policy) -> tuple[str, ...]:
    """The policy's approval tiers, lowest first."""
    return tuple(tier.role for tier in policy.authority)


def queue_tiers(policy: Policy) -> tuple[str, ...]:
    """Tiers whose recommendations wait in the approvals queue: all above the lowest."""
    return tiers(policy)[1:]


def approvable_tiers(key: ApiKeyEntry, policy: Policy) -> tuple[str, ...]:
    """The queue tiers ``key`` may approve (empty for viewers and keys without authority)."""
    ladder = tiers(policy)
    if not key.role.includes(Role.agent) or key.authority is None:
        return ()
    if key.authority not in ladder:
        logger.warning(
            "key %s has authority %r, which is not a tier of policy %s (%s)",
            key.name,
            key.authority,
            policy.version,
            ", ".join(ladder),
        )
        return ()
    return tuple(tier for tier in ladder[1 : ladder.index(key.authority) + 1])


def may_approve(key: ApiKeyEntry, required_tier: str | None, policy: Policy) -> bool:
    """Whether ``key`` may approve a recommendation that needs ``required_tier``."""
    return required_tier is not None and required_tier in approvable_tiers(key, policy)


def refusal(key: ApiKeyEntry, required_tier: str | None, policy: Policy) -> str:
    """Why ``key`` may not approve (the text for a 403 or for the page)."""
    if required_tier is None or required_tier not in queue_tiers(policy):
        return "this recommendation needs no approval"
    if not key.role.includes(Role.agent):
        return f"a {key.role} key cannot approve; this needs the {required_tier} tier"
    if key.authority is None:
        return f"this key has no approval authority; this needs the {required_tier} tier"
    return f"this key approves up to the {key.authority} tier; this needs the {required_tier} tier"
