"""Synchronous needs between features, as small Protocols (design.md §1).

A feature that offers a service sets it on :class:`Services` in its ``setup``; a feature
that needs it reads it at call time (it may be absent: degrade, never crash).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Protocol

from cti.principal import Principal


@dataclass(frozen=True, slots=True)
class CustomerCard:
    """What the IVR, the ACD and the screen pop know about a caller."""

    customer_id: int
    name: str
    company: str = ""
    tier: str = ""  # e.g. "vip", "standard"
    owner_agent: str = ""
    tags: tuple[str, ...] = ()
    notes: str = ""
    birthday: date | None = None
    contact_id: int | None = None
    contact_name: str = ""


class CustomerDirectory(Protocol):
    """Implemented by crm_bridge; used by ivr (recognition), acd (owner routing), pops."""

    async def lookup_number(self, e164: str) -> CustomerCard | None: ...

    async def recent_interactions(
        self, customer_id: int, limit: int = 5
    ) -> list[dict[str, object]]: ...


@dataclass(frozen=True, slots=True)
class DialDecision:
    """The dial policy's answer for one number."""

    allowed: bool
    number: str = ""  # the E.164 number to dial when allowed
    # why not, in words for the user ("premium-rate numbers may not be dialed"), and as a
    # stable code: invalid | country | type | denied | limit | dnc
    reason: str = ""
    code: str = ""


class DialPolicy(Protocol):
    """One policy every outbound path passes before dialing (design.md §5): click-to-call,
    callbacks, campaigns, forwarding. ``purpose`` names the path ("click_to_call",
    "callback", "campaign", "forward"); ``agent`` is who the call is for, if anyone."""

    async def check(
        self, number: str, *, purpose: str, agent: str = "", campaign: str = ""
    ) -> DialDecision: ...


class DoNotCallList(Protocol):
    """Numbers that must never be dialed (company list, and a campaign's own list)."""

    async def is_blocked(self, e164: str, *, campaign: str = "") -> bool: ...


@dataclass(frozen=True, slots=True)
class QueueThresholds:
    """A queue's statistics thresholds (set per queue in the ACD; design.md §4)."""

    service_level_s: int = 20  # T: answered within it counts for the service level
    short_abandon_s: int = 5  # an abandon sooner than this is a short abandon
    wrapup_s: int = 0  # wrap-up counted per handled call


@dataclass(frozen=True, slots=True)
class AgentTime:
    """An agent's signed-in time in a period: logged in (available or paused) and paused
    seconds by reason."""

    login_s: float = 0.0
    pause_by_reason: tuple[tuple[str, float], ...] = ()


class QueueService(Protocol):
    """Implemented by acd: its queues and agents as other features (statistics, the
    wallboard) read them. ``live_queues`` is the ACD's live model now: per queue its
    members (``name``, ``interface``, ``state``, ``paused``, ``paused_reason``) and the
    callers waiting (``entries`` with ``wait_s``)."""

    async def thresholds(self) -> dict[str, QueueThresholds]: ...

    async def agent_time(self, since: datetime, until: datetime) -> dict[str, AgentTime]: ...

    def live_queues(self, now: datetime) -> list[dict[str, Any]]: ...

    def is_personal_queue(self, queue: str) -> bool: ...


class PhoneDirectory(Protocol):
    """Implemented by phones: an agent's provisioned phones as app_queue interfaces
    (``PJSIP/<endpoint>``), the one to use first first (a registered phone before one
    that is not, a browser phone before a desk phone). The ACD logs an agent in on the
    first unless asked for another device; agents without phones keep their devices."""

    async def agent_interfaces(self, agent: str) -> list[str]: ...

    async def placed_here(self, interface: str) -> bool:
        """Whether an agent on ``interface`` is a queue member on this node's Asterisk
        server: always on one node and for what is not a provisioned phone; in a cluster,
        a phone only on the server where it registered last (PhoneLocated)."""
        ...


class PromptSpeaker(Protocol):
    """Implemented by ivr: a text spoken in ``language`` ("zh" Mandarin, "en") as a sound
    Asterisk plays (its name, no extension). Raises RuntimeError when it cannot."""

    async def speak(self, text: str, language: str) -> str: ...

    async def warm(self, group: str, texts: Iterable[tuple[str, str]]) -> None:
        """Where prompts are played by URL: ``texts`` ((text, language) pairs) spoken now
        and named as what ``group`` plays, so Asterisk has them before the first caller;
        elsewhere nothing (not even spoken)."""
        ...

    def expect(self, group: str) -> None:
        """``group`` will report what it plays (``plays`` or ``warm``) at its start: until
        it has, Asterisk's cached copies of this node's prompts are not cleaned up."""
        ...

    def plays(self, group: str, names: Iterable[str]) -> None:
        """The sounds ``group`` (one per caller of this, e.g. "queues") plays now, instead
        of what it named before: where they are URLs, Asterisk fetches them ahead of the
        first caller and forgets the replaced ones (decision 0032)."""
        ...

    async def language_sound(self, text: str, language: str, name: str) -> None:
        """``text`` spoken as the sound ``name`` of ``language`` (``digits/5``: where
        Asterisk looks when a channel of that language says a number), where the node has
        a view of Asterisk's sounds directory; elsewhere nothing (the Asterisk root holds
        them: cti.asterisk.sounds, decision 0032)."""
        ...


@dataclass(frozen=True, slots=True)
class Conversion:
    """A telesales result the CRM keeps (outbound campaigns): a sale, or an interested
    prospect, for the lead's number."""

    number: str  # E.164
    name: str
    agent: str  # who converted it (becomes the owner of a new customer)
    kind: str  # "sale" | "interested"
    campaign: str
    note: str = ""
    customer_id: int | None = None  # the customer the number already belongs to, if known


class SalesPipeline(Protocol):
    """Implemented by crm_bridge (offered as ``Services.sales``): a conversion becomes a
    customer (created when the number is unknown, owned by the agent) with an opportunity
    (sale: won; interested: open). Returns the customer's id."""

    async def record_conversion(self, conversion: Conversion) -> int: ...


@dataclass(frozen=True, slots=True)
class Recipient:
    """A customer as a message goes to it: its numbers (E.164) and e-mail addresses, and
    the fields a template may use (``name``, ``company``, ``owner``, ``tier``, ``region``
    and the admin's custom fields)."""

    customer_id: int
    name: str
    owner: str = ""
    phones: tuple[str, ...] = ()
    emails: tuple[str, ...] = ()
    fields: tuple[tuple[str, str], ...] = ()


class CustomerRecipients(Protocol):
    """The customers messages go to (offered by the CRM; used by messaging). ``actor`` is
    who asks: an agent gets only what it may see (its own customers and the pool)."""

    async def recipient(self, customer_id: int, actor: Principal) -> Recipient | None: ...

    async def recipients(
        self, query: Mapping[str, str], actor: Principal, limit: int
    ) -> list[Recipient]:
        """Customers as the customer list filters them (``q``, ``owner``, ``tier``,
        ``region``, ``tag``, ``contacted_after``, ``contacted_before``), newest first."""
        ...

    async def by_number(self, e164: str) -> Recipient | None:
        """The customer owning this number (no visibility rule: the system asks)."""
        ...

    async def by_email(self, address: str) -> Recipient | None:
        """The customer owning this e-mail address, compared case-insensitively (no
        visibility rule: the system asks, e.g. to file a reply)."""
        ...


@dataclass(frozen=True, slots=True)
class Reminder:
    """One line of an agent's worklist: ``kind`` ``follow_up`` (an open opportunity whose
    follow-up date ``due`` has come: before the day asked about it is overdue),
    ``birthday`` (a contact's; ``title`` is the contact) or ``dormant`` (nobody contacted
    the customer for the CRM's ``dormant_days``; ``title`` is the last contact)."""

    kind: str
    customer_id: int
    customer_name: str
    title: str
    owner: str
    due: date | None = None


class ReminderSource(Protocol):
    """Implemented by crm_bridge (offered as ``Services.reminders``): the reminders of the
    customers ``owner`` (an agent) owns for ``day``, from the same query as the desktop
    worklist (``GET /api/v1/crm/reminders``). Used by messaging's daily digest."""

    async def reminders_for(self, owner: str, day: date) -> list[Reminder]: ...


@dataclass
class Services:
    customer_directory: CustomerDirectory | None = None
    customer_recipients: CustomerRecipients | None = None  # offered by the CRM
    queues: QueueService | None = None  # offered by acd
    dial_policy: DialPolicy | None = None  # set by the daemon (cti); features must ask it
    do_not_call: DoNotCallList | None = None  # offered by the outbound feature
    phones: PhoneDirectory | None = None  # offered by the phones feature
    prompts: PromptSpeaker | None = None  # offered by ivr (text-to-speech for other features)
    extra: dict[str, object] = field(default_factory=dict)
    sales: SalesPipeline | None = None  # offered by crm_bridge (telesales conversions)
    reminders: ReminderSource | None = None  # offered by crm_bridge (the worklist's)
