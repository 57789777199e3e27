"""The gate configuration reference (docs/gate-config.md), generated from the config models themselves.

The models in :mod:`citypass.gate.config` (and the camera, barrier and ledger models they embed) describe every
field; this module walks them and renders Markdown: one section per model, a table per section with
each key's dotted TOML path, type (with its bounds), default and description. Rendering only reads the
models, so the output is deterministic and a test can insist that the committed page is current.

Regenerate the page after changing a model::

    .venv/bin/python -m citypass.gate.configdoc > docs/gate-config.md

Example::

    >>> doc = render_config_doc()
    >>> doc.splitlines()[0]
    '# Gate configuration reference'
    >>> "| `camera.fps` | number, ≥ 0 | `30.0` |" in doc
    True
"""

from __future__ import annotations

import enum
import inspect
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import annotated_types
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from citypass.gate.config import GateConfig

REGENERATE = ".venv/bin/python -m citypass.gate.configdoc > docs/gate-config.md"

#: The shortest config that starts a gate (the test suite loads it, so it stays valid).
MINIMAL_EXAMPLE = """\
gate_id = "wl-e1"              # this gate's unique id
site = "west-lake"             # where it stands (a site in the ledger)
root_key = "root.pub"          # the pinned root public key, beside this file
snapshot = "snapshot.cpls"     # first boot: the signed snapshot from `citypass issuer export`

[ledger]
path = "ledger.sqlite3"        # created on first start
"""

# Rules that span several fields live in model validators, which cannot describe themselves.
CROSS_FIELD_RULES = (
    "`decoder` must name a decoder the gate has (see its description).",
    "`barrier.passage_timeout_s` must be shorter than `decision.entry_budget_s`.",
    'The six `barrier.*_pin` values must all differ (`17` and `"17"` are the same pin).',
    "`camera.width` and `camera.height`: set both or neither.",
    "`camera.reopen_backoff_min_s` must not exceed `camera.reopen_backoff_max_s`.",
    "`camera.stale_after_s` must be longer than one frame interval (`1 / camera.fps`).",
)


def render_config_doc() -> str:
    """The whole reference page as Markdown (ends with one newline)."""
    sections = list(_sections(GateConfig, ()))
    out = [
        "# Gate configuration reference",
        "",
        f"<!-- Generated from the models in gate/config.py by gate/configdoc.py; do not edit. "
        f"Regenerate: {REGENERATE} -->",
        "",
        "`citypass gate run --config FILE` reads one [TOML](https://toml.io) file. It is validated in full at "
        "start-up, and the daemon refuses to start (exit status 1, `Error: FILE: key.path: reason`) when "
        "anything is wrong:",
        "",
        "* **Unknown keys are rejected** at every level, so a typo (`stale_afer_s`) stops the gate instead of "
        "silently running with the default.",
        "* Values must have the right type and lie within the bounds given below.",
        "* **Relative paths are resolved against the folder of the config file**, not the working "
        f"directory: {_path_keys()}, and a relative folder or file in `camera.source`.",
        "* TOML has no null: write `0` for an unset size or debounce and `\"floating\"` for no pull resistor.",
        "",
        "A complete, commented example for a museum entrance is "
        "[examples/gate.toml](../examples/gate.toml). The smallest config that starts a gate:",
        "",
        "```toml",
        MINIMAL_EXAMPLE.rstrip("\n"),
        "```",
        "",
        "Rules across fields:",
        "",
        *(f"* {rule}" for rule in CROSS_FIELD_RULES),
        "",
        "Sections: " + ", ".join(f"[{title}](#{anchor})" for title, anchor, _ in sections) + ".",
    ]
    for _, _, body in sections:
        out += ["", *body]
    return "\n".join(out) + "\n"


# -- walking the models --------------------------------------------------------------------------------
def _sections(model: type[BaseModel], prefix: tuple[str, ...]) -> Iterator[tuple[str, str, list[str]]]:
    """(title, anchor, lines) for ``model`` and then, depth first, for each model it embeds."""
    dotted = ".".join(prefix)
    title = f"`[{dotted}]`" if prefix else "Top level"
    anchor = dotted.replace(".", "") if prefix else "top-level"
    lines = [f"## {title}", "", _first_paragraph(model), ""]
    lines += ["| Key | Type | Default | Description |", "|---|---|---|---|"]
    nested: list[tuple[type[BaseModel], tuple[str, ...]]] = []
    for name, info in model.model_fields.items():
        path = (*prefix, name)
        key = ".".join(path)
        sub = _model_of(info.annotation)
        if sub is not None:
            nested.append((sub, path))
            default = "*required*" if info.is_required() else "defaults below"
            row = [f"`{key}`", f"table, see [`[{key}]`](#{key.replace('.', '')})", default]
        else:
            row = [f"`{key}`", _type_text(info), _default_text(info)]
        row.append(_cell(info.description or ""))
        lines.append("| " + " | ".join(row) + " |")
    yield title, anchor, lines
    for sub, path in nested:
        yield from _sections(sub, path)


def iter_fields(
    model: type[BaseModel] = GateConfig, prefix: tuple[str, ...] = ()
) -> Iterator[tuple[str, type[BaseModel], FieldInfo]]:
    """Every field of ``model`` and of the models it embeds, as (dotted key, owning model, field)."""
    for name, info in model.model_fields.items():
        yield ".".join((*prefix, name)), model, info
        sub = _model_of(info.annotation)
        if sub is not None:
            yield from iter_fields(sub, (*prefix, name))


def _model_of(annotation: Any) -> type[BaseModel] | None:
    """The model class a field holds (``Model`` or ``Model | None``), or None for a plain value."""
    candidates = _union_members(annotation)
    for arg in candidates:
        if inspect.isclass(arg) and issubclass(arg, BaseModel):
            return arg
    return None


def _union_members(annotation: Any) -> tuple[Any, ...]:
    if get_origin(annotation) in (Union, types.UnionType):
        return get_args(annotation)
    return (annotation,)


def _path_keys() -> str:
    keys = [f"`{key}`" for key, _, info in iter_fields() if Path in _union_members(info.annotation)]
    return ", ".join(keys)


# -- rendering one field -------------------------------------------------------------------------------
_NAMES: dict[Any, str] = {str: "string", int: "integer", float: "number", bool: "boolean", Path: "path"}


def _type_text(info: FieldInfo) -> str:
    members = [m for m in _union_members(info.annotation) if m is not type(None)]
    optional = len(members) < len(_union_members(info.annotation))
    text = " or ".join(_one_type(m) for m in members)
    bounds = _bounds(info.metadata)
    if bounds:
        text += ", " + ", ".join(bounds)
    if optional:
        text += " (optional)"
    return _cell(text)


def _one_type(tp: Any) -> str:
    if get_origin(tp) is Literal:
        return "one of " + ", ".join(f"`{_toml(v)}`" for v in get_args(tp))
    if inspect.isclass(tp) and issubclass(tp, enum.Enum):
        return "one of " + ", ".join(f"`{_toml(m.value)}`" for m in tp)
    return _NAMES.get(tp, getattr(tp, "__name__", str(tp)))


def _bounds(metadata: list[Any]) -> list[str]:
    lengths = [m for m in metadata if isinstance(m, annotated_types.MinLen | annotated_types.MaxLen)]
    sizes = {getattr(m, "min_length", None) for m in lengths} | {getattr(m, "max_length", None) for m in lengths}
    sizes.discard(None)
    if len(lengths) == 2 and len(sizes) == 1:  # min_length == max_length
        rest = [b for m in metadata if m not in lengths and (b := _bound(m))]
        return [f"exactly {sizes.pop()} characters", *rest]
    return [b for m in metadata if (b := _bound(m))]


def _bound(meta: Any) -> str | None:
    if isinstance(meta, annotated_types.Ge):
        return f"≥ {meta.ge}"
    if isinstance(meta, annotated_types.Gt):
        return f"> {meta.gt}"
    if isinstance(meta, annotated_types.Le):
        return f"≤ {meta.le}"
    if isinstance(meta, annotated_types.Lt):
        return f"< {meta.lt}"
    if isinstance(meta, annotated_types.MinLen):
        return f"at least {meta.min_length} characters"
    if isinstance(meta, annotated_types.MaxLen):
        return f"at most {meta.max_length} characters"
    pattern = getattr(meta, "pattern", None)
    if isinstance(pattern, str):
        return f"matching `{pattern}`"
    return None


def _default_text(info: FieldInfo) -> str:
    if info.is_required():
        return "*required*"
    value = info.get_default(call_default_factory=True)
    if value is None:
        return "*unset*"
    return _cell(f"`{_toml(value)}`")


def _toml(value: object) -> str:
    """A value as it is written in TOML."""
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | Path):
        escaped = str(value).replace("\\", "\\\\").replace('"', '\\"')
        return f'"{escaped}"'
    return repr(value)


def _cell(text: str) -> str:
    """Text safe inside one Markdown table cell."""
    return " ".join(text.split()).replace("|", "\\|")


def _first_paragraph(model: type[BaseModel]) -> str:
    doc = inspect.cleandoc(model.__doc__ or "")
    return " ".join(doc.split("\n\n")[0].split())


if __name__ == "__main__":
    sys.stdout.write(render_config_doc())
