"""API keys: roles, optional customer scope, hashed storage, and a helper that makes new keys.

Key format. A key is ``kw_`` followed by 43 URL-safe base64 characters (``secrets.token_urlsafe
(32)``: 256 random bits), e.g. ``kw_Q2l0eS1zdGF0ZS1vZi10aGUtYXJ0LXJhbmRvbS10b2tlbg``. Clients send
it as ``Authorization: Bearer <key>``.

Storage. keepwise never stores a key, only ``sha256(key)`` as 64 lower-case hex digits. A fast
unsalted hash is enough here because the keys are 256-bit random tokens, not passwords: nobody
can guess a preimage, so salting and slow key-derivation functions (which protect low-entropy
secrets) would add nothing. Presented keys are hashed and compared with every configured hash
in constant time (:func:`hmac.compare_digest`).

Configuration. Key entries come from a TOML file (``KEEPWISE_API_KEYS_FILE``)::

    [[keys]]
    name = "alice"                  # who holds it: recorded as recorded_by on decisions
    role = "agent"                  # viewer | agent | admin
    sha256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
    account_manager = "AM-007"      # optional scope: only this account manager's customers
    # region = "north"              # optional scope: only this region's customers
    # authority = "manager"         # optional: approves recommendations up to this tier

and/or from the environment variable ``KEEPWISE_API_KEYS`` holding a JSON list of the same
entries (``[{"name": "batch", "role": "viewer", "sha256": "..."}]``). Names and hashes must be
unique across both. :func:`new_api_key` makes a key and its entry (``keepwise`` CLI material).

Roles are ordered: ``viewer`` (read recommendations, decisions and model facts, score feature
rows) < ``agent`` (also record decisions) < ``admin`` (also reload the model).

Scope (object-level authorisation, OWASP API1). A key with ``account_manager`` and/or
``region`` sees and records only customers whose account manager and region equal them (both
must match when both are set); every other customer answers 404 exactly as an unknown one.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationError

TOKEN_PREFIX = "kw_"
TOKEN_BYTES = 32
_HEX64 = r"^[0-9a-f]{64}$"


class KeyConfigError(ValueError):
    """The API key configuration is unusable; the message names the source and the entry."""


class Role(StrEnum):
    """What a key may do; each role may do everything the roles before it may."""

    viewer = "viewer"
    agent = "agent"
    admin = "admin"

    @property
    def rank(self) -> int:
        """Position in the order viewer < agent < admin."""
        return list(Role).index(self)

    def includes(self, other: Role) -> bool:
        """Whether this role may do what ``other`` may."""
        return self.rank >= other.rank


ScopeValue = Annotated[str, Field(min_length=1, max_length=200)]


class ApiKeyEntry(BaseModel):
    """One configured API key: who holds it, its role, its hash and its optional scope."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Annotated[
        str,
        Field(
            min_length=1,
            max_length=100,
            pattern=r"^[A-Za-z0-9_.@+-]+$",
            description="Who holds the key; recorded as `recorded_by` on decision reports.",
        ),
    ]
    role: Role = Field(description="viewer, agent or admin.")
    sha256: Annotated[
        str, Field(pattern=_HEX64, description="sha256 of the key, 64 lower-case hex digits.")
    ]
    account_manager: ScopeValue | None = Field(
        default=None, description="Scope: only customers of this account manager."
    )
    region: ScopeValue | None = Field(
        default=None, description="Scope: only customers in this region."
    )
    authority: ScopeValue | None = Field(
        default=None,
        description="Approval authority: the policy's tier this holder may approve up to "
        "(e.g. `manager`, `director`); needs role agent or above. None: approves nothing.",
    )

    @property
    def scoped(self) -> bool:
        """Whether the key is limited to some customers."""
        return self.account_manager is not None or self.region is not None

    def owns(self, account_manager: str | None, region: str | None) -> bool:
        """Whether a customer with this account manager and region is within the key's scope.

        Args:
            account_manager: The customer's account manager (None: unknown).
            region: The customer's region (None: unknown).

        Returns:
            True for an unscoped key; otherwise every scope attribute the key sets must equal
            the customer's (an unknown attribute never matches).
        """
        if self.account_manager is not None and account_manager != self.account_manager:
            return False
        return self.region is None or region == self.region

    def to_toml(self) -> str:
        """The entry as a ``[[keys]]`` table for the key file."""
        lines = ["[[keys]]"]
        for field_name in ("name", "role", "sha256", "account_manager", "region", "authority"):
            value = getattr(self, field_name)
            if value is not None:
                # a JSON string is a TOML basic string (raw UTF-8: no surrogate escapes)
                lines.append(f"{field_name} = {json.dumps(str(value), ensure_ascii=False)}")
        return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class KeyScope:
    """The customers a new key may see: by account manager, by region, or both."""

    account_manager: str | None = None
    region: str | None = None


def hash_token(token: str) -> str:
    """The stored form of a key: sha256 of its UTF-8 bytes, lower-case hex."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_api_key(
    name: str, role: Role | str, scope: KeyScope | None = None, authority: str | None = None
) -> tuple[str, ApiKeyEntry]:
    """Make a new random API key and the configuration entry that admits it.

    Show the token once to its holder and store only the entry (``entry.to_toml()`` for the key
    file, ``entry.model_dump_json(exclude_none=True)`` for ``KEEPWISE_API_KEYS``).

    Args:
        name: Who will hold the key (letters, digits and ``_.@+-``).
        role: ``viewer``, ``agent`` or ``admin``.
        scope: Limit the key to one account manager's and/or one region's customers.
        authority: The approval tier the holder may approve up to (e.g. ``director``).

    Returns:
        ``(token, entry)``: the secret ``kw_...`` token and its hashed entry.

    Raises:
        KeyConfigError: The name, role or scope is invalid.
    """
    token = TOKEN_PREFIX + secrets.token_urlsafe(TOKEN_BYTES)
    scope = scope or KeyScope()
    try:
        entry = ApiKeyEntry(
            name=name,
            role=Role(role),
            sha256=hash_token(token),
            account_manager=scope.account_manager,
            region=scope.region,
            authority=authority,
        )
    except (ValidationError, ValueError) as error:
        raise KeyConfigError(f"cannot make a key for {name!r}: {error}") from error
    return token, entry


def read_key_file(path: Path) -> list[ApiKeyEntry]:
    """Read the ``[[keys]]`` entries of a TOML key file.

    Raises:
        KeyConfigError: The file is missing, not TOML, has keys other than ``keys`` or an
            invalid entry (named by position and field).
    """
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as error:
        raise KeyConfigError(f"API key file {path} does not exist") from error
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise KeyConfigError(f"API key file {path} cannot be read as TOML: {error}") from error
    unknown = sorted(set(data) - {"keys"})
    if unknown:
        raise KeyConfigError(
            f"API key file {path}: unknown top-level key(s) {unknown}; "
            "write entries as [[keys]] tables"
        )
    raw = data.get("keys", [])
    if not isinstance(raw, list):
        raise KeyConfigError(f"API key file {path}: 'keys' must be an array of tables")
    return [_entry(item, f"{path}: keys[{index}]") for index, item in enumerate(raw)]


def _entry(item: object, where: str) -> ApiKeyEntry:
    try:
        return ApiKeyEntry.model_validate(item)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'entry'}: {e['msg']}" for e in error.errors()
        )
        raise KeyConfigError(f"{where}: {problems}") from error


class KeyRing:
    """The configured keys; authenticates presented tokens.

    Args:
        entries: Key entries; names and hashes must be unique.

    Raises:
        KeyConfigError: A name or a hash appears twice.
    """

    def __init__(self, entries: Iterable[ApiKeyEntry]) -> None:
        self._entries: tuple[ApiKeyEntry, ...] = tuple(entries)
        for attribute in ("name", "sha256"):
            values = [getattr(e, attribute) for e in self._entries]
            twice = sorted({v for v in values if values.count(v) > 1})
            if twice:
                shown = twice if attribute == "name" else [v[:12] + "..." for v in twice]
                raise KeyConfigError(f"API key {attribute} given more than once: {shown}")

    @classmethod
    def from_sources(cls, file: Path | None, entries: Sequence[ApiKeyEntry]) -> KeyRing:
        """Keys from an optional TOML file plus entries from the environment."""
        return cls([*(read_key_file(file) if file is not None else []), *entries])

    def __len__(self) -> int:
        return len(self._entries)

    def authenticate(self, token: str) -> ApiKeyEntry | None:
        """The entry whose hash matches ``token``, or None (constant-time, every entry)."""
        digest = hash_token(token).encode("ascii")
        found: ApiKeyEntry | None = None
        for entry in self._entries:
            if hmac.compare_digest(digest, entry.sha256.encode("ascii")):
                found = entry
        return found
