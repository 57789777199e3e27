"""One-shot checking of codes and images against a snapshot: the logic behind ``citypass gate check``.

Each input becomes one JSON-ready dict. Inputs are decided in order on one in-memory ledger, so the
run behaves like a sequence of presentations at one gate (a single-use ticket shown twice is denied
the second time; a dynamic presentation shown twice is a replay).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from citypass.gate.decision import Decision, GateContext, decide
from citypass.gate.memory_ledger import MemoryLedger
from citypass.gate.policy import GatePolicy

#: Reads an image file and returns (decoded texts, decoder name, milliseconds spent decoding, why nothing was
#: decoded when the picture was refused or unreadable).
ImageReader = Callable[[str], tuple[list[str], str, float, str | None]]


@dataclass(frozen=True)
class CheckInput:
    kind: str  # "text" or "image"
    value: str


def decision_fields(decision: Decision) -> dict[str, Any]:
    """The JSON fields every tool prints for a decision."""
    cred = decision.credential
    parsed = decision.verdict.parsed
    return {
        "decision": "allow" if decision.allowed else "deny",
        "reason": decision.reason.value if decision.reason else None,
        "message_zh": decision.reason.zh if decision.reason else "请通行",
        "message_en": decision.reason.en if decision.reason else "Welcome",
        "detail": decision.verdict.detail or None,
        "flags": [f.value for f in decision.flags],
        "persons": decision.persons,
        "kind": decision.kind.value if decision.kind else None,
        "credential_id": cred.id.hex() if cred else None,
        "product": cred.product_name if cred else None,
        "dynamic": parsed.dynamic if parsed else None,
        "benefit_left": decision.benefit_left,
        "format": decision.verdict.format,
        "partner": decision.verdict.partner.id if decision.verdict.partner else None,
        "partner_zh": decision.verdict.partner.name_zh if decision.verdict.partner else None,
        "partner_en": decision.verdict.partner.name_en if decision.verdict.partner else None,
    }


def check_inputs(
    inputs: Iterable[CheckInput],
    ledger: MemoryLedger,
    ctx: GateContext,
    now: int,
    policy: GatePolicy | None = None,
    read_image: ImageReader | None = None,
) -> Iterable[dict[str, Any]]:
    """Decide each input in turn and yield its result line."""
    for item in inputs:
        texts: list[str]
        extra: dict[str, Any] = {}
        if item.kind == "text":
            texts = [item.value]
        else:
            if read_image is None:
                raise ValueError("image inputs need a decoder")
            texts, decoder, ms, problem = read_image(item.value)
            extra = {"decoder": decoder, "ms": {"decode": round(ms, 3)}}
            if problem is not None:
                extra["error"] = f"no code: {problem}"
        if not texts:
            yield {"input": item.value, "decoded": False, "decision": None, "reason": None,
                   "credential_id": None, "product": None} | extra
            continue
        started = time.perf_counter()
        decision = decide(texts[0], ledger, ctx, now, policy)
        decide_ms = (time.perf_counter() - started) * 1000
        ledger.record(decision, ctx.site.number)
        if item.kind == "image":
            extra["ms"]["decide"] = round(decide_ms, 3)
        yield {"input": item.value, "decoded": True} | decision_fields(decision) | extra
