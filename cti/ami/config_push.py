"""Configuration files pushed to Asterisk over AMI (decision 0031).

A feature that keeps one of Asterisk's configuration files in line with the store (the
ACD's ``queues_cti.conf``, the phones' ``pjsip_phones.conf``) describes it as a
:class:`ConfigFile` and :func:`push` gives it to the server with the manager's
``UpdateConfig``: Asterisk itself writes the file into its own configuration directory,
so the daemon needs no access to the Asterisk host's filesystem (a node on another host,
a node that took the server over). One path for the single box and the cluster.

Guarantees:

- **Exact**: every value Asterisk reads back (``GetConfig``, the module's reload) is the
  value given here, byte for byte: values that the manager or the config parser would
  change (leading/trailing white space, a leading ``>``, CR/LF/NUL, longer than a manager
  line) and option names that are not plain words are refused with ``ValueError`` before
  anything is sent. ``;`` is escaped by Asterisk's writer and unescaped by its reader.
- **Whole file**: the first message starts from the shipped ``base`` file (empty, or the
  templates the file's categories inherit from), so nothing of the previous content
  survives; the file is fully replaced. A message holds at most
  ``AST_MAX_MANHEADERS`` (128) header lines (the manager silently drops the ones beyond),
  so the actions are cut into several messages, the next ones editing the destination.
- **Changes only** (``changes_only``): the file is first read back (``GetConfig``, with
  its base) and only the categories that differ are rewritten: a name whose categories
  Asterisk reads back otherwise than wanted is deleted (``DelCat``) and built again, a
  name no longer wanted is deleted, a new one built; nothing is sent when the file holds
  it all (the usual connect); the file is pushed whole instead when that takes no more
  header lines than the edit. The result is the same as a whole push (the base's
  categories, then the wanted ones, read back exactly), except that names come in the
  order they were added. A file that does not start with exactly its base's categories
  (missing, unreadable, a base that changed) is pushed whole. Each ``UpdateConfig``
  loads, edits and saves the whole file in Asterisk (main/manager.c
  ``action_updateconfig``), so a message costs the file's size: sending only the
  changes, and keeping files small (phones.pjsip shards the phones), is what scales.
- **Failure**: a refused or interrupted push raises (:class:`ConfigPushError`,
  NotConnected, TimeoutError); the destination may then hold part of the new content,
  but nothing loads it: the caller reloads the module only after a whole push, and the
  next push (every AMI connect pushes) reads the file back and mends it.
- Categories of the same name (PJSIP's endpoint, aor and auth of one phone) are built
  under a temporary unique name and renamed last, since ``Append`` adds to every
  category of its ``Cat``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from cti.ami.actions import AmiActionError
from cti.ami.client import AmiClient
from cti.ami.protocol import Message

__all__ = [
    "MAX_HEADERS",
    "Category",
    "ConfigFile",
    "ConfigPushError",
    "actions",
    "changes",
    "expected",
    "messages",
    "push",
    "push_changes",
    "read",
    "render_text",
]

#: AST_MAX_MANHEADERS (include/asterisk/manager.h): header lines per manager message
MAX_HEADERS = 128
#: the lines every UpdateConfig message carries besides its actions: Action, ActionID,
#: SrcFilename, DstFilename
_FIXED_HEADERS = 4
#: the manager reads a line into a 1025-byte buffer (CRLF included): "Value-000000: " is
#: 14 bytes, the 6-digit counter allows 999999 actions
_MAX_VALUE_BYTES = 1024 - 2 - 14
#: GetConfig's category counter has 6 digits
MAX_CATEGORIES = 1_000_000
#: category names: the config parser's limit is 79 bytes (struct ast_category.name[80])
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.@+-]{0,62}")
_OPTION = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,79}")
_FILE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}\.conf")

Header = tuple[str, str]
Action = tuple[Header, ...]


class ConfigPushError(AmiActionError):
    """Asterisk refused a configuration push; the message says which file and why
    (an AmiActionError: callers that handle Asterisk's refusals handle it)."""

    def __init__(self, response: Message, text: str) -> None:
        super().__init__(response)
        self.args = (text,)


@dataclass(frozen=True, slots=True)
class Category:
    """``[name](inherit...)`` followed by ``option = value`` lines, in order.
    ``template``: ``[name](!)``, as :func:`read` reports the base's templates (a push
    cannot fill a template: Append does not reach them; they belong in the base)."""

    name: str
    options: tuple[tuple[str, str], ...] = ()
    inherit: tuple[str, ...] = ()
    template: bool = False

    def check(self) -> None:
        if self.template:  # Append cannot reach a template (no catfilter for them)
            raise ValueError(f"[{self.name}]: templates belong in the base file")
        for name in (self.name, *self.inherit):
            if not _NAME.fullmatch(name):
                raise ValueError(f"category name not allowed in Asterisk's config: {name!r}")
        for option, value in self.options:
            if not _OPTION.fullmatch(option):
                raise ValueError(f"[{self.name}]: option name not allowed: {option!r}")
            check_value(f"[{self.name}] {option}", value)


def check_value(where: str, value: str) -> None:
    """Refuse what would not come back from Asterisk exactly as given."""
    if any(c in value for c in "\r\n\x00"):
        raise ValueError(f"{where}: CR, LF or NUL in a value")
    if value != value.strip(" \t"):
        raise ValueError(f"{where}: leading or trailing white space in a value")
    if value.startswith(">"):
        raise ValueError(f"{where}: a value may not start with '>'")
    if len(value.encode("utf-8")) > _MAX_VALUE_BYTES:
        raise ValueError(f"{where}: value longer than {_MAX_VALUE_BYTES} bytes")


@dataclass(frozen=True, slots=True)
class ConfigFile:
    """A file of Asterisk's configuration directory, as a whole.

    ``name``: the file (e.g. ``queues_cti.conf``); ``base``: the file the instance
    generation ships beside it that each push starts from (empty, or the templates the
    categories inherit from); ``categories``: the content after the base's."""

    name: str
    base: str
    categories: tuple[Category, ...] = field(default_factory=tuple)

    def check(self) -> None:
        for f in (self.name, self.base):
            if not _FILE.fullmatch(f):
                raise ValueError(f"not a configuration file name: {f!r}")
        for cat in self.categories:
            cat.check()


def render_text(categories: Sequence[Category]) -> str:
    """The categories as a config file (what Asterisk's writer makes of them, without its
    header), for comparing and for reading."""
    out: list[str] = []
    for cat in categories:
        flags = (["!"] if cat.template else []) + list(cat.inherit)
        out.append(f"[{cat.name}]" + (f"({','.join(flags)})" if flags else ""))
        out += [f"{o} = {v.replace(';', chr(92) + ';')}" for o, v in cat.options]
        out.append("")
    return "\n".join(out)


def actions(categories: Sequence[Category], taken: Iterable[str] = ()) -> list[Action]:
    """The UpdateConfig actions (without their counters) that build ``categories`` onto
    the base: NewCat, Append per option, RenameCat for a repeated name (built under a
    name neither in ``categories`` nor ``taken``, the file's other names)."""
    names = [c.name for c in categories]
    used = {*names, *taken}
    out: list[Action] = []
    for i, cat in enumerate(categories):
        cat.check()
        build = cat.name
        if names.count(cat.name) > 1:
            build = f"cti-building-{i}"
            while build in used:
                build += "x"
            used.add(build)
        new: list[Header] = [("Action", "NewCat"), ("Cat", build)]
        if cat.inherit:
            new.append(("Options", f"inherit={','.join(cat.inherit)}"))
        out.append(tuple(new))
        for option, value in cat.options:
            out.append((("Action", "Append"), ("Cat", build), ("Var", option), ("Value", value)))
        if build != cat.name:
            out.append((("Action", "RenameCat"), ("Cat", build), ("Value", cat.name)))
    return out


def expected(cat: Category, templates: Mapping[str, Category]) -> Category:
    """``cat`` as ``GetConfig`` reads it back once built on these templates: the options
    it inherits (each template's, in order), then its own, less the ones Asterisk's
    writer leaves out because they repeat the inherited value. A template not given
    leaves ``cat`` as it is (the push then fails: Asterisk says the template is missing)."""
    if not cat.inherit or any(t not in templates for t in cat.inherit):
        return cat
    inherited = tuple(o for t in cat.inherit for o in templates[t].options)
    last = dict(inherited)  # the value each inherited option ends with
    own = tuple((o, v) for o, v in cat.options if last.get(o) != v)
    return Category(cat.name, inherited + own, cat.inherit)


def changes(
    now: Sequence[Category], base: Sequence[Category], want: Sequence[Category]
) -> list[Action] | None:
    """The UpdateConfig actions that turn the file ``now`` (as :func:`read` gives it)
    into ``base`` (the base file's categories, read likewise) followed by ``want``; empty
    when it holds that already; None when ``now`` does not start with exactly ``base``
    (it must then be pushed whole). Compared name by name: every category of one name,
    in order, as Asterisk would read it back (:func:`expected`)."""
    if list(now[: len(base)]) != list(base) or any(c.template for c in now[len(base) :]):
        return None
    templates = {c.name: c for c in base if c.template}
    have = _by_name(now[len(base) :])
    wanted = _by_name(want)
    if any(name in templates for name in wanted):
        return None  # DelCat would leave the template: only a whole push builds that
    stale = [n for n in have if [expected(c, templates) for c in wanted.get(n, ())] != have[n]]
    build = [c for c in want if have.get(c.name) is None or c.name in stale]
    out: list[Action] = [(("Action", "DelCat"), ("Cat", n)) for n in stale]
    return out + actions(build, taken=[c.name for c in now])


def _by_name(categories: Iterable[Category]) -> dict[str, list[Category]]:
    out: dict[str, list[Category]] = {}
    for cat in categories:
        out.setdefault(cat.name, []).append(cat)
    return out


def messages(
    acts: Sequence[Action], budget: int = MAX_HEADERS - _FIXED_HEADERS
) -> Iterator[dict[str, str]]:
    """The actions cut into messages of at most ``budget`` header lines, numbered from 0
    in each message (``Action-000000``...). At least one message, even with no action."""
    current: dict[str, str] = {}
    n = 0
    for act in acts:
        if len(act) > budget:
            raise ValueError("an action larger than a manager message")
        if len(current) + len(act) > budget:
            yield current
            current, n = {}, 0
        for key, value in act:
            current[f"{key}-{n:06d}"] = value
        n += 1
    yield current


async def push(
    ami: AmiClient, conf: ConfigFile, *, timeout: float = 30.0, changes_only: bool = False
) -> int:
    """Make ``conf.name`` on the server hold ``conf`` (the base, then the categories);
    returns the number of UpdateConfig messages sent. The module is not reloaded.

    Without ``changes_only`` the file is replaced whole from the base. With it, the file
    and its base are read back first (two ``GetConfig``) and only what differs is sent
    (:func:`changes`): nothing when the file holds ``conf`` already (a connect, a node
    taking over a server its predecessor configured), one message for a category
    changed; the whole file when it does not start with its base."""
    if changes_only:
        return await push_changes(ami, (conf,), timeout=timeout)
    return await _push(ami, conf, None, timeout, _EtcDir(ami, timeout))


async def push_changes(
    ami: AmiClient, confs: Sequence[ConfigFile], *, timeout: float = 30.0
) -> int:
    """:func:`push` with ``changes_only`` for each file in turn, each base read once (one
    ``GetConfig`` a file, plus one a base); returns the messages sent in all."""
    for conf in confs:  # refused before anything is sent
        conf.check()
    bases: dict[str, list[Category] | None] = {}
    etc_dir = _EtcDir(ami, timeout)
    sent = 0
    for conf in confs:
        if conf.base not in bases:
            try:
                bases[conf.base] = await read(ami, conf.base, timeout=timeout)
            except AmiActionError:
                bases[conf.base] = None  # unreadable: each file pushed whole
        sent += await _push(ami, conf, bases[conf.base], timeout, etc_dir)
    return sent


class _EtcDir:
    """Asterisk's configuration directory (``Getvar ASTETCDIR``), asked once a push."""

    def __init__(self, ami: AmiClient, timeout: float) -> None:
        self.ami, self.timeout = ami, timeout
        self._path = ""

    async def get(self, for_file: str) -> str:
        if not self._path:
            reply = await self.ami.send_action(
                "Getvar", {"Variable": "ASTETCDIR"}, timeout=self.timeout
            )
            path = (reply.get("Value") or "").rstrip("/")
            if not path.startswith("/"):
                raise ConfigPushError(
                    reply, f"{for_file}: Asterisk did not say its configuration directory"
                )
            self._path = path
        return self._path


async def _push(
    ami: AmiClient,
    conf: ConfigFile,
    base: Sequence[Category] | None,
    timeout: float,
    etc_dir: _EtcDir,
) -> int:
    """``conf`` pushed whole, or with ``base`` (its base file as read) only what the file
    lacks."""
    conf.check()
    acts = actions(conf.categories)
    src_is_base, exists = True, False
    if base is not None:
        try:
            edit = changes(await read(ami, conf.name, timeout=timeout), base, conf.categories)
            exists = True
        except AmiActionError:
            edit = None  # missing or unreadable: pushed whole below
        if edit is not None and not edit:
            return 0
        # the edit unless rebuilding from the base is no more work (a file that lost most
        # of its names: a one-file phones list moved into the shards)
        if edit is not None and sum(map(len, edit)) < sum(map(len, acts)):
            acts, src_is_base = edit, False
    # absolute paths: Asterisk's writer puts each category into the file it came from,
    # and renames only the source file's exact name to the destination's
    etc = await etc_dir.get(conf.name)
    base_path, dest = f"{etc}/{conf.base}", f"{etc}/{conf.name}"
    if not exists:
        try:  # UpdateConfig refuses a destination that does not exist yet
            await ami.send_action("CreateConfig", {"Filename": conf.name}, timeout=timeout)
        except AmiActionError:
            pass  # it exists (or cannot be made: UpdateConfig says why below)
    sent = 0
    for i, msg in enumerate(messages(acts)):
        source = base_path if i == 0 and src_is_base else dest
        headers = {"SrcFilename": source, "DstFilename": dest, **msg}
        try:
            await ami.send_action("UpdateConfig", headers, timeout=timeout)
        except AmiActionError as exc:
            raise ConfigPushError(
                exc.response, f"{conf.name}: Asterisk refused the update (message {i + 1}): {exc}"
            ) from exc
        sent += 1
    return sent


async def read(ami: AmiClient, name: str, *, timeout: float = 30.0) -> list[Category]:
    """The file as Asterisk loads it (``GetConfig``): each category with its effective
    options (inherited ones included), template flag and the templates it inherits;
    templates too (``Filter: TEMPLATES=include``: GetConfig leaves them out otherwise)."""
    reply = await ami.send_action(
        "GetConfig", {"Filename": name, "Filter": "TEMPLATES=include"}, timeout=timeout
    )
    out: list[Category] = []
    for i in range(MAX_CATEGORIES):
        cat = reply.get(f"Category-{i:06d}")
        if cat is None:
            break
        options: list[tuple[str, str]] = []
        for j in range(1_000_000):
            line = reply.get(f"Line-{i:06d}-{j:06d}")
            if line is None:
                break
            option, _, value = line.partition("=")
            options.append((option, value))
        templates = reply.get(f"Templates-{i:06d}") or ""
        out.append(Category(
            cat, tuple(options), tuple(t for t in templates.split(",") if t),
            template=reply.get(f"IsTemplate-{i:06d}") == "1",
        ))  # fmt: skip
    return out
