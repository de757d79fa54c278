"""Cleanup policies: the schema and the staged loading of a policy file.

Stages, as Cloud Custodian does them, each error naming file, line, policy and field:
1. YAML: syntax errors with their line; duplicate keys are errors (PyYAML keeps the last);
   merge keys (`<<: *defaults`) merge as YAML says (explicit keys win); a document whose
   aliases expand it past MAX_VALUES values (an alias bomb) is refused.
2. Structure: a mapping with one key, `policies`, holding a list of mappings.
3. Schema: each policy against the pydantic models below; unknown keys are errors.
4. Meaning: names are unique; checks across fields (ranges, a match that narrows) live in
   the models' validators.

The field descriptions and examples below are the reference: docs/policies.md is generated
from them (pipelines/cleanup/reference.py), so the docs and the validator cannot drift.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from pipelines.braket.facts import CANCELLABLE_STATUSES, REGIONS

# -- value types ---------------------------------------------------------------------------

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
_DURATION = re.compile(r"(?:\d+(?:\.\d+)?[smhdw])+")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(value: Any) -> timedelta:
    """'30m', '24h', '2d', '1w', '1d12h' -> timedelta; anything else is an error."""
    if isinstance(value, timedelta):
        return value
    text = value.strip() if isinstance(value, str) else None
    if not text or _DURATION.fullmatch(text) is None:
        raise ValueError(
            f"{value!r} is not a duration: use a number and a unit (s, m, h, d, w), "
            "like 30m, 24h, 2d or 1d12h"
        )
    seconds = sum(float(n) * _UNITS[u] for n, u in _DURATION_PART.findall(text))
    try:
        return timedelta(seconds=seconds)
    except OverflowError:
        raise ValueError(f"{value!r} is longer than any task could be old") from None


def format_duration(value: timedelta) -> str:
    seconds = int(value.total_seconds())
    for unit in ("w", "d", "h", "m"):
        if seconds and seconds % _UNITS[unit] == 0:
            return f"{seconds // _UNITS[unit]}{unit}"
    return f"{seconds}s"


def _region(value: str) -> str:
    if value not in REGIONS:
        raise ValueError(f"{value!r} is not a Braket region; use some of {', '.join(REGIONS)}")
    return value


_TASK_ARN = re.compile(
    r"arn:aws:braket:(?P<region>[a-z0-9-]+):\d{12}:quantum-task/"
    r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
)


def _task_arn(value: str) -> str:
    """An exempt ARN is compared exactly: a typo (a bare id, an upper-case id, a space, the
    wrong region) would protect nothing without a word."""
    found = _TASK_ARN.fullmatch(value)
    if found is None:
        raise ValueError(
            f"{value!r} is not a quantum task ARN "
            "(arn:aws:braket:<region>:<12-digit account>:quantum-task/<lower-case uuid>)"
        )
    _region(found["region"])
    return value


def _cancellable(value: str) -> str:
    if value not in CANCELLABLE_STATUSES:
        raise ValueError(f"{value} is not cancellable: statuses may only be CREATED and/or QUEUED")
    return value


def _tag_values(value: Any) -> Any:
    """Tags are text. YAML reads unquoted `yes`, `on`, `true`, `1.10` or `017` as booleans or
    numbers, and turning those back into text cannot restore what was written (`yes` would
    become 'true', `1.10` '1.1'): such a value is an error that says to quote it."""
    if isinstance(value, dict):
        for key, tag in value.items():
            if not isinstance(tag, str):
                raise ValueError(
                    f"tag {key!r}: the value must be text; YAML read {tag!r} as a "
                    f'{type(tag).__name__}, so quote it as it should match, e.g. {key}: "yes"'
                )
    return value


def _utc(value: Any) -> Any:
    """A date means its midnight UTC; a time without an offset is UTC."""
    if isinstance(value, date) and not isinstance(value, datetime):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    return value


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _bucket(value: str) -> str:
    if "/" in value:
        raise ValueError(
            f"{value!r} is not a bucket name: write the name alone (no s3://, no '/'); "
            "match the directory with prefix or key_prefix"
        )
    return value


def _segment(value: str) -> str:
    if "/" in value:
        raise ValueError(
            f"{value!r} has a '/': prefix is the first segment of the output directory's key "
            "prefix (Sandbox for Sandbox/<task id>); match deeper paths with key_prefix"
        )
    return value


def _key_prefix(value: str) -> str:
    if value.endswith("/") or value.startswith("/"):
        raise ValueError(
            f"{value!r} starts or ends with '/': key_prefix is the output directory without "
            f"its task id, like {value.strip('/')!r}"
        )
    return value


def _device_pattern(value: str) -> str:
    if not value.startswith("arn:aws:braket:"):
        raise ValueError(
            f"{value!r} is not a device ARN glob; write one like "
            "arn:aws:braket:us-west-1::device/qpu/rigetti/* or arn:aws:braket:*::device/qpu/*"
        )
    region = value[len("arn:aws:braket:") :].split(":", 1)[0]
    if "device/quantum-simulator/" in value and region not in ("", "*"):
        raise ValueError(
            f"{value!r} can never match: simulator ARNs have no region "
            "(arn:aws:braket:::device/quantum-simulator/amazon/sv1); use match.regions to "
            "limit the regions"
        )
    return value


Region = Annotated[str, AfterValidator(_region)]
CancellableStatus = Annotated[str, AfterValidator(_cancellable)]
Duration = Annotated[timedelta, BeforeValidator(parse_duration)]
Tags = Annotated[dict[str, str], BeforeValidator(_tag_values)]
Instant = Annotated[datetime, BeforeValidator(_utc), AfterValidator(_aware)]
DevicePattern = Annotated[str, AfterValidator(_device_pattern)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    @field_validator("*", mode="before")
    @classmethod
    def _not_empty(cls, value: Any) -> Any:
        # YAML reads a key with nothing after it (its value commented out, say) as null.
        # Taken as "not given", it would drop a filter or a `when` condition unnoticed and
        # widen what the policy cancels.
        if value is None:
            raise ValueError("no value: give one or remove the key")
        return value


# -- the schema ----------------------------------------------------------------------------


class Match(_Strict):
    """Which live tasks the policy is about. Every given filter must hold (AND)."""

    regions: list[Region] | None = Field(
        default=None,
        min_length=1,
        description="Regions to search; default every region the client is configured for "
        "(BRAKET_REGIONS). Also the policy's scope for `limits.max_percent`.",
        examples=[["us-west-1"]],
    )
    devices: list[DevicePattern] | None = Field(
        default=None,
        min_length=1,
        description="Device ARN globs (fnmatch: `*`, `?`, `[...]`); a task matches when its "
        "device matches any of them.",
        examples=[["arn:aws:braket:*::device/qpu/*"]],
    )
    statuses: list[CancellableStatus] = Field(
        default=list(CANCELLABLE_STATUSES),
        min_length=1,
        description="Live statuses to act on. Only the cancellable CREATED and QUEUED are allowed.",
        examples=[["QUEUED"]],
    )
    bucket: Annotated[str, AfterValidator(_bucket)] | None = Field(
        default=None,
        description="Glob on the task's output S3 bucket (`outputS3Bucket`): the name only.",
        examples=["amazon-braket-masumoto"],
    )
    prefix: Annotated[str, AfterValidator(_segment)] | None = Field(
        default=None,
        description="Glob on the first path segment of the task's key prefix (its output "
        "directory without the task id): `Sandbox` for `Sandbox/<task id>`, `jobs` for "
        "`jobs/sweep/tasks/<task id>`, '' for a directory that is the task id alone. The "
        "`prefix` of staging.task_facts and the marts.",
        examples=["Sandbox"],
    )
    key_prefix: Annotated[str, AfterValidator(_key_prefix)] | None = Field(
        default=None,
        description="Glob on the output directory without the task id at its end: "
        "`jobs/sweep/tasks` for `jobs/sweep/tasks/<task id>`, '' for the id alone, the whole "
        "directory when it does not end with `/<task id>`; staging.task_facts' `key_prefix`.",
        examples=["jobs/*-sweep/tasks"],
    )
    tags: Tags | None = Field(
        default=None,
        min_length=1,
        description="Tags the task must all carry; values are globs (`*`: any value). "
        "Values are text: quote `yes`, `true`, `1.10` and the like, which YAML reads as "
        "booleans or numbers.",
        examples=[{"team": "sandbox"}],
    )
    min_age: Duration | None = Field(
        default=None,
        description="Minimum time since creation: a number and a unit s, m, h, d or w.",
        examples=["24h"],
    )
    min_shots: int | None = Field(
        default=None, ge=0, description="Fewest shots (inclusive).", examples=[1000]
    )
    max_shots: int | None = Field(
        default=None, ge=0, description="Most shots (inclusive).", examples=[100000]
    )
    created_after: Instant | None = Field(
        default=None,
        description="Created at or after this instant (ISO 8601; a date is its midnight UTC; "
        "no offset means UTC).",
        examples=["2026-01-01"],
    )
    created_before: Instant | None = Field(
        default=None,
        description="Created strictly before this instant (same forms as created_after).",
        examples=["2026-02-01T00:00:00Z"],
    )

    # Field validators (not the model's), so an error names the field and its line.
    @field_validator("max_shots")
    @classmethod
    def _shots_range(cls, value: int | None, info: ValidationInfo) -> int | None:
        low = info.data.get("min_shots")
        if value is not None and low is not None and low > value:
            raise ValueError(f"min_shots {low} is above max_shots {value}")
        return value

    @field_validator("created_before")
    @classmethod
    def _created_range(cls, value: datetime | None, info: ValidationInfo) -> datetime | None:
        after = info.data.get("created_after")
        if value is not None and after is not None and after >= value:
            raise ValueError("created_after must be before created_before")
        return value

    @model_validator(mode="after")
    def _narrows(self) -> Match:
        narrowing = [
            name
            for name in type(self).model_fields
            if name != "statuses" and not _narrows_nothing(name, getattr(self, name))
        ]
        if not narrowing:
            raise ValueError(
                "match selects every cancellable task of the account; narrow it with at least "
                "one of "
                + ", ".join(n for n in type(self).model_fields if n != "statuses")
                + " (globs that match any value such as '*' or 'arn:aws:braket:*', every "
                "region, min_shots 0 or min_age 0 narrow nothing)"
            )
        return self


# Values unlike each other, for each glob field: globs that match all of them would match
# any task (`*`, `arn:aws:braket:*::device/*`); a glob that narrows misses at least one.
_ANY_VALUE = {
    "devices": (
        "arn:aws:braket:::device/quantum-simulator/amazon/sv1",
        "arn:aws:braket:us-east-1::device/qpu/ionq/Forte-1",
        "arn:aws:braket:eu-north-1::device/qpu/iqm/Garnet",
    ),
    "bucket": ("a", "amazon-braket-qml", "my.bucket-1"),
    "prefix": ("Sandbox", "jobs", "x"),
    "key_prefix": ("Sandbox", "jobs/sweep/tasks", "x"),
}
_HOLDS_FOR_EVERY_TASK = {"min_shots": 0, "min_age": timedelta(0)}


def _narrows_nothing(name: str, value) -> bool:
    if value is None:
        return True
    if name in _ANY_VALUE:
        globs = value if isinstance(value, list) else [value]
        return all(any(fnmatchcase(v, g) for g in globs) for v in _ANY_VALUE[name])
    if name == "regions":
        return set(value) >= set(REGIONS)
    return name in _HOLDS_FOR_EVERY_TASK and value == _HOLDS_FOR_EVERY_TASK[name]


class Exempt(_Strict):
    """Tasks the policy never cancels, even when they match. Any one exemption is enough."""

    tags: Tags = Field(
        default_factory=dict,
        description="A task carrying any of these tag pairs is exempt (values are globs).",
        examples=[{"keep": "true"}],
    )
    arns: list[Annotated[str, AfterValidator(_task_arn)]] = Field(
        default_factory=list,
        description="Task ARNs that are exempt (whole ARNs, checked: compared exactly).",
        examples=[
            [
                "arn:aws:braket:us-west-1:123456789012:quantum-task/0b0e2b4c-6d8e-4f3a-9b1c-2d3e4f5a6b7c"
            ]
        ],
    )


class When(_Strict):
    """A budget condition: the matched tasks are grouped by device and UTC day of creation,
    and a group is cancelled only when its condition holds. With both keys, either one is
    enough. Exempt tasks count towards a group's total (they are queued load) but are never
    cancelled."""

    queued_shots_at_least: int | None = Field(
        default=None,
        ge=1,
        description="The group's total shots reach this number.",
        examples=[50],
    )
    queued_cost_usd_at_least: float | None = Field(
        default=None,
        gt=0,
        description="The group's would-be cost in USD (data/prices.csv, priced as if the tasks "
        "completed) reaches this amount. A device without a price never meets it.",
        examples=[25.0],
    )

    @model_validator(mode="after")
    def _something(self) -> When:
        if self.queued_shots_at_least is None and self.queued_cost_usd_at_least is None:
            raise ValueError("give queued_shots_at_least, queued_cost_usd_at_least or both")
        return self


class Limits(_Strict):
    """Checked on the whole selection before any cancellation; over a limit the policy
    cancels nothing, the breach is audited and the run fails."""

    max_cancellations: int = Field(
        default=100,
        ge=1,
        description="Most tasks one run may cancel for this policy.",
        examples=[50],
    )
    max_percent: float = Field(
        default=100.0,
        gt=0,
        le=100,
        description="Most tasks one run may cancel, as a percentage of the policy's scope: "
        "every live task in the policy's regions with one of its `match.statuses`, before "
        "any other filter.",
        examples=[100],
    )

    def breach(self, selected: int, scope: int) -> str | None:
        """Why cancelling `selected` tasks of a scope of `scope` is over a limit, or None."""
        if selected > self.max_cancellations:
            return f"{selected} tasks selected, max_cancellations is {self.max_cancellations}"
        if scope and selected * 100 > self.max_percent * scope:
            return (
                f"{selected} of {scope} tasks in scope selected ({100 * selected / scope:.1f}%), "
                f"max_percent is {self.max_percent:g}"
            )
        return None


class Policy(_Strict):
    """One cleanup rule."""

    name: str = Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$",
        description="Unique name: letters, digits, `.`, `_`, `-`; up to 63 characters. "
        "It names the policy in the audit, run tags and the clientToken.",
        examples=["sandbox-cleanup"],
    )
    description: str = Field(
        min_length=1, description="What the policy is for, in a sentence.",
        examples=["cancel the queued tasks of one bucket/prefix"],
    )  # fmt: skip
    match: Match = Field(description="Which tasks the policy is about.")
    exempt: Exempt = Field(
        default_factory=Exempt, description="Tasks never cancelled even when they match."
    )
    when: When | None = Field(
        default=None, description="Optional budget condition per device and UTC day."
    )
    action: Literal["cancel"] = Field(
        description="What to do with the selected tasks; `cancel` (CancelQuantumTask) is the "
        "only action.",
        examples=["cancel"],
    )
    mode: Literal["dry-run", "enforce"] = Field(
        default="dry-run",
        description="`dry-run` records what would happen and never cancels; `enforce` cancels.",
        examples=["enforce"],
    )
    limits: Limits = Field(default_factory=Limits, description="Caps checked before acting.")


SECTIONS: dict[str, type[BaseModel]] = {
    "": Policy,
    "match": Match,
    "exempt": Exempt,
    "when": When,
    "limits": Limits,
}

# -- stage 1: YAML with lines and duplicate keys -------------------------------------------

# Values a document may hold once its aliases are expanded. A policy is a few dozen values; a
# "billion laughs" file (anchors of lists of aliases of lists ...) is a few lines that expand
# to billions, which validation (and every later walk) would go through one by one.
MAX_VALUES = 100_000

_MERGE_TAG = "tag:yaml.org,2002:merge"
_VALUE_TAG = "tag:yaml.org,2002:value"


class _Map(dict):
    """A YAML mapping that remembers the line of each key (1-based), its duplicates and the
    mappings merged into it (`<<`)."""

    line: int = 0
    lines: dict
    duplicates: list
    merged: list


class _Seq(list):
    line: int = 0
    lines: list


class _Loader(yaml.SafeLoader):
    def flatten_mapping(self, node: yaml.MappingNode) -> None:
        """Off: PyYAML's merge copies each merged mapping's entries into the merging node, so
        `<<: [*a, *a]` nested a few dozen times (under a tag like `!!set` that still uses it)
        doubles the entries at every level. `_construct_map` merges instead; elsewhere a
        `<<` is left a key that no constructor knows, an error with its line."""


def _merge_sources(loader: _Loader, value_node: yaml.Node) -> list:
    """The mappings `<<` merges: one mapping, or a list of them (the first listed wins)."""
    nodes = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
    for source in nodes:
        if not isinstance(source, yaml.MappingNode):
            raise yaml.constructor.ConstructorError(
                None,
                None,
                "`<<` (a merge key) takes a mapping or a list of mappings, like `<<: *defaults`",
                source.start_mark,
            )
    return [loader.construct_object(source, deep=True) for source in nodes]


def _construct_map(loader: _Loader, node: yaml.MappingNode) -> _Map:
    """Keys written in the mapping first; then the keys of the mappings merged with `<<` that
    it does not write itself (as YAML's merge key says: explicit keys override merged ones).
    Each merged mapping is built once, already merged, so nested merges never multiply."""
    out = _Map()
    out.line, out.lines, out.duplicates, out.merged = node.start_mark.line + 1, {}, [], []
    merge_line = None
    for key_node, value_node in node.value:
        line = key_node.start_mark.line + 1
        if key_node.tag == _MERGE_TAG:
            if merge_line is not None:
                out.duplicates.append(("<<", line, merge_line))
                continue
            merge_line = line
            out.merged = _merge_sources(loader, value_node)
            continue
        if key_node.tag == _VALUE_TAG:  # a plain `=` key: text, as PyYAML's flatten does
            key_node.tag = "tag:yaml.org,2002:str"
        key = loader.construct_object(key_node, deep=True)
        try:
            hash(key)
        except TypeError:
            raise yaml.constructor.ConstructorError(
                None, None, "a key must be a plain value", key_node.start_mark
            ) from None
        if key in out:
            out.duplicates.append((key, line, out.lines[key]))
            continue
        out[key] = loader.construct_object(value_node, deep=True)
        out.lines[key] = line
    for source in out.merged:
        for key, value in source.items():
            if key not in out:
                out[key] = value
                out.lines[key] = source.lines[key]  # where the value is written
    return out


def _construct_seq(loader: _Loader, node: yaml.SequenceNode) -> _Seq:
    out = _Seq(loader.construct_object(child, deep=True) for child in node.value)
    out.line = node.start_mark.line + 1
    out.lines = [child.start_mark.line + 1 for child in node.value]
    return out


def _construct_timestamp(loader: _Loader, node: yaml.ScalarNode):
    """An unquoted date YAML cannot build (2026-13-01) stays text, so validation reports it
    with its field and line; PyYAML would raise a bare ValueError."""
    try:
        return loader.construct_yaml_timestamp(node)
    except ValueError:
        return loader.construct_scalar(node)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_map)
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _construct_seq)
_Loader.add_constructor("tag:yaml.org,2002:timestamp", _construct_timestamp)


# -- problems ------------------------------------------------------------------------------


@dataclass(frozen=True)
class PolicyProblem:
    file: str
    line: int | None
    message: str
    policy: str | None = None
    field: str | None = None

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        parts = [where]
        if self.policy:
            parts.append(f"policy {self.policy!r}")
        if self.field:
            parts.append(f"field {self.field}")
        return ": ".join(parts) + f": {self.message}"


class PolicyError(ValueError):
    """The policy file is not valid; `problems` lists every error found."""

    def __init__(self, problems: list[PolicyProblem]):
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


@dataclass
class PolicyCheck:
    """The result of checking a file: the valid policies and every problem, per policy."""

    file: str
    policies: list[Policy] = field(default_factory=list)
    problems: list[PolicyProblem] = field(default_factory=list)
    names: list[str] = field(default_factory=list)  # every policy in file order, valid or not

    @property
    def ok(self) -> bool:
        return not self.problems


def _path_text(loc: tuple) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _line_at(node: Any, loc: tuple, default: int) -> int:
    """The line of the deepest YAML node on `loc` (the key's line for mapping entries)."""
    line = default
    for part in loc:
        if isinstance(node, _Map) and part in node:
            line, node = node.lines[part], node[part]
        elif isinstance(node, _Seq) and isinstance(part, int) and part < len(node):
            line, node = node.lines[part], node[part]
        else:
            break
    return line


_CONTAINERS = dict | list | tuple  # tuples: the pairs of `!!omap` and `!!pairs`


def _children(node: Any) -> list[tuple[Any, Any]]:
    """(key or index, value) of a mapping, list or tuple; nothing for a scalar."""
    if isinstance(node, dict):
        return list(node.items())
    if isinstance(node, list | tuple):
        return list(enumerate(node))
    return []


def _expanded_sizes(root: Any, cap: int) -> dict[int, int]:
    """id -> how many values each mapping and list under `root` holds with its aliases
    expanded (itself included; capped at `cap`). Each one is visited once: an alias is the
    same Python object as its anchor, so a shared one's size is counted, not walked again."""
    sizes: dict[int, int] = {}
    stack: list[tuple[Any, bool]] = [(root, False)]
    while stack:
        node, ready = stack.pop()
        if id(node) in sizes or not isinstance(node, _CONTAINERS):
            continue
        children = [value for _, value in _children(node)]
        if ready:
            total = 1 + sum(sizes.get(id(child), 1) for child in children)
            sizes[id(node)] = min(total, cap)
        else:
            stack.append((node, True))
            stack += [(child, False) for child in children if isinstance(child, _CONTAINERS)]
    return sizes


def _widest_line(data: Any, sizes: dict[int, int], limit: int) -> int | None:
    """The line of the deepest entry that alone expands past `limit`: where the bomb is."""
    node, line = data, getattr(data, "line", None)
    while True:
        for key, child in _children(node):
            if sizes.get(id(child), 1) > limit:
                line = node.lines[key] if isinstance(node, _Map | _Seq) else line
                node = child
                break
        else:
            return line


def _duplicates(root: Any) -> list[tuple[tuple, Any, int, int]]:
    """(loc of the mapping, key, line, first line) for every duplicate key under `root`,
    each mapping visited once (at its first loc), the mappings merged into it included."""
    found = []
    seen: set[int] = set()
    stack: list[tuple[Any, tuple]] = [(root, ())]
    while stack:
        node, loc = stack.pop()
        if not isinstance(node, _CONTAINERS) or id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, _Map):
            found += [(loc, key, line, first) for key, line, first in node.duplicates]
            stack += [(source, loc) for source in reversed(node.merged)]
        stack += [(value, (*loc, key)) for key, value in reversed(_children(node))]
    return found


def _message(error: dict, loc: tuple) -> str:
    kind, message = error["type"], error["msg"]
    if kind == "extra_forbidden":
        section = loc[0] if len(loc) > 1 else ""
        model = SECTIONS.get(section if isinstance(section, str) else "", None)
        allowed = f"; allowed keys: {', '.join(model.model_fields)}" if model else ""
        return f"unknown key {loc[-1]!r}{allowed}"
    if kind == "missing":
        return "required key missing"
    for prefix in ("Value error, ", "Assertion failed, "):
        if message.startswith(prefix):
            return message[len(prefix) :]
    if "input" in error and kind not in ("model_type", "dict_type", "list_type"):
        got = repr(error["input"])
        return f"{message} (got {got if len(got) <= 200 else got[:200] + ' ...'})"
    return message


# -- stages 2 to 4 -------------------------------------------------------------------------


def check_text(text: str, file: str = "<policies>") -> PolicyCheck:
    """Run every stage on the YAML `text`; never raises for a bad file."""
    check = PolicyCheck(file=file)
    try:
        data = yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        column = f", column {mark.column + 1}" if mark else ""
        problem = exc.problem or exc.context or "cannot parse"
        if exc.problem and exc.context and exc.context_mark:
            problem += f" ({exc.context} started at line {exc.context_mark.line + 1})"
        # A constructor's error (a merge key on a scalar, an unknown tag) is no syntax error.
        kind = (
            "YAML error"
            if isinstance(exc, yaml.constructor.ConstructorError)
            else "YAML syntax error"
        )
        check.problems.append(PolicyProblem(file, line, f"{kind}{column}: {problem}"))
        return check
    except yaml.YAMLError as exc:
        check.problems.append(PolicyProblem(file, None, f"YAML error: {exc}"))
        return check
    except RecursionError:
        check.problems.append(
            PolicyProblem(
                file, None, "YAML nested too deeply (lists or mappings in hundreds of levels)"
            )
        )
        return check

    sizes = _expanded_sizes(data, MAX_VALUES + 1)
    if sizes.get(id(data), 1) > MAX_VALUES:
        check.problems.append(
            PolicyProblem(
                file,
                _widest_line(data, sizes, MAX_VALUES),
                f"refused: its aliases (`*name`) expand the document past {MAX_VALUES:,} values "
                "(a YAML alias bomb?); write the values out or nest fewer aliases",
            )
        )
        return check

    for loc, key, line, first in _duplicates(data):
        policy = _policy_name(data, loc)
        check.problems.append(
            PolicyProblem(
                file,
                line,
                f"duplicate key {key!r} (first at line {first})",
                policy=policy,
                field=_path_text((*_field_loc(loc), key)) or None,
            )
        )
    if check.problems:
        return check

    if data is None:
        check.problems.append(PolicyProblem(file, None, "the file is empty; expected `policies:`"))
        return check
    if not isinstance(data, dict):
        check.problems.append(
            PolicyProblem(file, 1, "expected a mapping with the key `policies` at the top")
        )
        return check
    for key in data:
        if key != "policies":
            check.problems.append(
                PolicyProblem(
                    file,
                    data.lines[key],
                    f"unknown top-level key {key!r}; the only key is `policies`",
                )
            )
    items = data.get("policies")
    if "policies" not in data:
        check.problems.append(PolicyProblem(file, 1, "`policies:` is missing"))
        return check
    if items is None:
        items = _Seq()
        items.line, items.lines = data.lines["policies"], []
    if not isinstance(items, list):
        check.problems.append(
            PolicyProblem(file, data.lines["policies"], "`policies` must be a list of policies")
        )
        return check

    seen: dict[str, int] = {}
    for i, item in enumerate(items):
        line = items.lines[i]
        label = item.get("name") if isinstance(item, dict) else None
        label = str(label) if label is not None else f"#{i + 1}"
        check.names.append(label)
        if not isinstance(item, dict):
            check.problems.append(PolicyProblem(file, line, "a policy must be a mapping", label))
            continue
        try:
            policy = Policy.model_validate(item)
        except ValidationError as exc:
            found = [
                PolicyProblem(
                    file,
                    _line_at(item, tuple(error["loc"]), line),
                    _message(error, tuple(error["loc"])),
                    policy=label,
                    field=_path_text(tuple(error["loc"])) or None,
                )
                for error in exc.errors()
            ]
            check.problems += sorted(found, key=lambda p: p.line or 0)
            continue
        if policy.name in seen:
            check.problems.append(
                PolicyProblem(
                    file,
                    item.lines.get("name", line),
                    f"duplicate policy name (first at line {seen[policy.name]})",
                    policy=policy.name,
                    field="name",
                )
            )
            continue
        seen[policy.name] = item.lines.get("name", line)
        check.policies.append(policy)
    return check


def _field_loc(loc: tuple) -> tuple:
    """The part of a file-level loc that is inside one policy."""
    return loc[2:] if len(loc) >= 2 and loc[0] == "policies" else loc


def _policy_name(data: Any, loc: tuple) -> str | None:
    if len(loc) >= 2 and loc[0] == "policies" and isinstance(loc[1], int):
        try:
            name = data["policies"][loc[1]].get("name")
        except (KeyError, IndexError, TypeError, AttributeError):
            name = None
        return str(name) if name is not None else f"#{loc[1] + 1}"
    return None


def check_file(path: str | Path) -> PolicyCheck:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) else f"not UTF-8 text ({exc.reason})"
        check = PolicyCheck(file=str(path))
        check.problems.append(PolicyProblem(str(path), None, f"cannot read: {why}"))
        return check
    return check_text(text, str(path))


def load_policies(path: str | Path) -> list[Policy]:
    """The file's policies; raises PolicyError listing every problem when any is found
    (one bad policy stops them all: a half-read file is not a policy set anyone wrote)."""
    check = check_file(path)
    if check.problems:
        raise PolicyError(check.problems)
    return check.policies
