"""Validated input of the CRM API and import (all of it attacker-controlled).

Text is refused (never silently changed) when it holds NUL or lone surrogates, or is
longer than its column: the caller gets a 400 naming the field. HTML and SQL fragments
are just text: stored and returned as given (nothing is rendered here, no SQL is built
from strings).
"""

from __future__ import annotations

import re
from datetime import date
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

from crm_bridge.models import NAME_LEN, NOTES_LEN

_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
MAX_TAGS = 32
TAG_LEN = 32
LEAD_STATUSES = ("new", "contacted", "qualified", "proposal", "won", "lost")


def _storable(value: str) -> str:
    if _UNSTORABLE.search(value):
        raise ValueError("must not contain NUL or unpaired surrogate characters")
    return value


def _tag(value: str) -> str:
    value = _storable(value).strip()
    if not value or "," in value:
        raise ValueError("a tag must be non-empty and must not contain a comma")
    return value


Text = Annotated[str, AfterValidator(_storable)]
Name = Annotated[str, Field(min_length=1, max_length=NAME_LEN), AfterValidator(_storable)]
ShortText = Annotated[str, Field(max_length=NAME_LEN), AfterValidator(_storable)]
Notes = Annotated[str, Field(max_length=NOTES_LEN), AfterValidator(_storable)]
Tag = Annotated[str, Field(max_length=TAG_LEN), AfterValidator(_tag)]
Tags = Annotated[list[Tag], Field(max_length=MAX_TAGS)]
AgentName = Annotated[str, Field(min_length=1, max_length=128), AfterValidator(_storable)]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)


class PhoneIn(_In):
    number: Annotated[str, Field(min_length=1, max_length=48), AfterValidator(_storable)]
    label: Annotated[str, Field(max_length=32), AfterValidator(_storable)] = ""


def _email(value: str) -> str:
    value = _storable(value).strip()
    if len(value) > 320 or not _EMAIL.fullmatch(value):
        raise ValueError("not an email address")
    return value


Email = Annotated[str, AfterValidator(_email)]
Emails = Annotated[list[Email], Field(max_length=16)]


def _phone_strings(v: Any) -> Any:
    """Phones may be given as plain strings."""
    if isinstance(v, list):
        return [{"number": p} if isinstance(p, str) else p for p in v]
    return v


Phones = Annotated[list[PhoneIn], BeforeValidator(_phone_strings), Field(max_length=16)]


class ContactIn(_In):
    name: Name
    title: ShortText = ""
    birthday: date | None = None
    tags: Tags = Field(default_factory=list)
    notes: Notes = ""
    phones: Phones = Field(default_factory=list)
    emails: Emails = Field(default_factory=list)


class CustomerIn(_In):
    kind: Literal["person", "company"] = "person"
    name: Name
    company: ShortText = ""
    tier: Annotated[str, Field(max_length=32), AfterValidator(_storable)] = ""
    tags: Tags = Field(default_factory=list)
    notes: Notes = ""
    owner: AgentName | None = None
    contacts: Annotated[list[ContactIn], Field(max_length=64)] = Field(default_factory=list)
    # shorthand for a person: phones/emails of a first contact named like the customer
    phones: Phones = Field(default_factory=list)
    emails: Emails = Field(default_factory=list)
    birthday: date | None = None
    custom: Annotated[dict[str, Any], Field(max_length=100)] = Field(default_factory=dict)
    force: bool = False  # create despite duplicate candidates (supervisor/admin only)

    def all_contacts(self) -> list[ContactIn]:
        contacts = list(self.contacts)
        if self.phones or self.emails or self.birthday:
            contacts.insert(
                0,
                ContactIn(
                    name=self.name, phones=self.phones, emails=self.emails, birthday=self.birthday
                ),
            )
        return contacts


class CustomerPatch(_In):
    kind: Literal["person", "company"] | None = None
    name: Name | None = None
    company: ShortText | None = None
    tier: Annotated[str, Field(max_length=32), AfterValidator(_storable)] | None = None
    tags: Tags | None = None
    notes: Notes | None = None
    # admin-defined fields (crm_bridge.custom): the keys given change, null removes one
    custom: Annotated[dict[str, Any], Field(max_length=100)] | None = None


class ContactPatch(_In):
    name: Name | None = None
    title: ShortText | None = None
    birthday: date | None = None
    tags: Tags | None = None
    notes: Notes | None = None
    phones: Phones | None = None
    emails: Emails | None = None


class InteractionPatch(_In):
    notes: Notes | None = None
    disposition: Annotated[str, Field(max_length=64), AfterValidator(_storable)] | None = None


class CallInteractionPut(_In):
    """``PUT /api/v1/interactions/by-call/{linkedid}``: what the agent writes on a call."""

    notes: Notes | None = None
    disposition: Annotated[str, Field(max_length=64), AfterValidator(_storable)] | None = None
    customer_id: Annotated[int, Field(ge=1, le=2**62)] | None = None


class InteractionIn(_In):
    """A manual interaction (a note, an outbound call logged by hand)."""

    customer_id: Annotated[int, Field(ge=1, le=2**62)]
    contact_id: Annotated[int, Field(ge=1, le=2**62)] | None = None
    kind: Literal["call", "note", "email", "visit"] = "note"
    notes: Notes = ""
    disposition: Annotated[str, Field(max_length=64), AfterValidator(_storable)] = ""


Label64 = Annotated[str, Field(max_length=64), AfterValidator(_storable)]


class LeadIn(_In):
    customer_id: Annotated[int, Field(ge=1, le=2**62)]
    title: Name
    value: float | None = Field(None, ge=0, le=1e15, allow_inf_nan=False)
    notes: Notes = ""
    owner: AgentName | None = None
    expected_close: date | None = None
    follow_up_on: date | None = None
    region: Label64 = ""  # "" : the customer's
    industry: Label64 = ""


class LeadPatch(_In):
    title: Name | None = None
    status: Literal["new", "contacted", "qualified", "proposal", "won", "lost"] | None = None
    value: float | None = Field(None, ge=0, le=1e15, allow_inf_nan=False)
    notes: Notes | None = None
    expected_close: date | None = None
    follow_up_on: date | None = None
    industry: Label64 | None = None


class AssignIn(_In):
    owner: AgentName
