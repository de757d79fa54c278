"""docs/policies.md's field reference, rendered from the policy schema (policies.py).

The docs keep their prose by hand; the block between the markers below is this module's
output, and a test fails when the two differ. After changing a field:

    .venv/bin/python -m pipelines.cleanup.reference        # rewrite the block
    .venv/bin/python -m pipelines.cleanup.reference --check  # exit 1 when stale
"""

from __future__ import annotations

import sys
import types
import typing
from datetime import datetime, timedelta
from pathlib import Path

import annotated_types
import yaml
from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from pipelines.cleanup.policies import SECTIONS, format_duration
from pipelines.settings import PROJECT_ROOT

DOC = PROJECT_ROOT / "docs" / "policies.md"
BEGIN = "<!-- BEGIN GENERATED: python -m pipelines.cleanup.reference -->"
END = "<!-- END GENERATED -->"


def _type_name(annotation) -> str:
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:
        return _type_name(args[0])
    if origin in (typing.Union, types.UnionType):
        rest = [a for a in args if a is not type(None)]
        return " or ".join(_type_name(a) for a in rest)
    if origin is typing.Literal:
        return " or ".join(f"`{a}`" for a in args)
    if origin is list:
        return f"list of {_type_name(args[0])}s"
    if origin is dict:
        return f"mapping of {_type_name(args[0])} to {_type_name(args[1])}"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return f"mapping ([{annotation.__name__.lower()}](#{annotation.__name__.lower()}))"
    return {
        str: "string",
        int: "integer",
        float: "number",
        bool: "boolean",
        timedelta: "duration",
        datetime: "timestamp",
    }.get(annotation, getattr(annotation, "__name__", str(annotation)))


def _constraints(field) -> str:
    out = []
    for item in field.metadata:
        for kind, sign in (
            (annotated_types.Ge, ">="),
            (annotated_types.Gt, ">"),
            (annotated_types.Le, "<="),
            (annotated_types.Lt, "<"),
        ):
            if isinstance(item, kind):
                out.append(f"{sign} {getattr(item, kind.__name__.lower())}")
        if isinstance(item, annotated_types.MinLen) and item.min_length > 0:
            out.append(f"at least {item.min_length}")
    return f" ({', '.join(out)})" if out else ""


def _yaml_value(value) -> str:
    if isinstance(value, timedelta):
        return format_duration(value)
    text = yaml.safe_dump(value, default_flow_style=True, sort_keys=False, width=1000).strip()
    return text.removesuffix("\n...").removesuffix("...").strip()


def _default(field) -> str:
    if field.is_required():
        return "required"
    if field.default_factory is not None:
        value = field.default_factory()
        if isinstance(value, BaseModel):
            return "see below"
    else:
        value = field.default
    if value is None or value is PydanticUndefined:
        return "-"
    return f"`{_yaml_value(value)}`"


def _example(name: str, field) -> str:
    if not field.examples:
        return ""
    return f"`{name}: {_yaml_value(field.examples[0])}`"


def render() -> str:
    parts = [BEGIN, ""]
    for section, model in SECTIONS.items():
        title = "policy" if not section else section
        parts.append(f"### {title}")
        parts.append("")
        parts.append(" ".join((model.__doc__ or "").split()))
        parts.append("")
        parts.append("| key | type | default | description | example |")
        parts.append("|---|---|---|---|---|")
        for name, field in model.model_fields.items():
            key = f"`{section}.{name}`" if section else f"`{name}`"
            kind = _type_name(field.annotation) + _constraints(field)
            description = " ".join((field.description or "").split()).replace("|", "\\|")
            parts.append(
                f"| {key} | {kind} | {_default(field)} | {description} | {_example(name, field)} |"
            )
        parts.append("")
    parts.append(END)
    return "\n".join(parts)


def current(doc: Path = DOC) -> str:
    text = doc.read_text()
    start, end = text.index(BEGIN), text.index(END) + len(END)
    return text[start:end]


def write(doc: Path = DOC) -> bool:
    """Rewrite the generated block; True when it changed."""
    text = doc.read_text()
    start, end = text.index(BEGIN), text.index(END) + len(END)
    new = text[:start] + render() + text[end:]
    if new != text:
        doc.write_text(new)
    return new != text


if __name__ == "__main__":
    if "--check" in sys.argv[1:]:
        stale = current() != render()
        print(f"{DOC}: {'stale: run python -m pipelines.cleanup.reference' if stale else 'ok'}")
        sys.exit(1 if stale else 0)
    print(f"{DOC}: {'rewritten' if write() else 'already current'}")
