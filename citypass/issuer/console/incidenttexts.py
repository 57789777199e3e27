"""Incidents in the console's languages: each kind's name, and a description built from the incident's fields.

An incident's ``detail`` is one English sentence made when it is found (:mod:`citypass.issuer.incidents` and the
modules beside it) and kept as it is, for the API and the audit trail. The console shows an operator working in
Chinese a Chinese description instead, made here from what every incident carries — its kind, how many taps or
events, which gates and sites — and keeps the English sentence, with its reason codes and timings, on hover.
Sites are named by their titles (:mod:`.sitenames`; the slug where a site has no title), not by their numbers.

    >>> from citypass.issuer.incidents import Incident
    >>> i = Incident("forged_code", None, ("t1", "t2"), ("scenic-009-in",), (9,), 0, 60, "2 attempts with a forged …")
    >>> kind_name("forged_code", "zh"), kind_name("forged_code", "en")
    ('伪造票证', 'Forged code')
    >>> describe(i, "zh")
    '伪造或外来票证尝试 2 次，闸机 scenic-009-in'
    >>> describe(i, "en")
    '2 attempts with a forged …'
    >>> shared = Incident("shared_pass", "c0ffee", ("t1", "t2"), ("lake-in", "temple-in"), (1, 2), 0, 600, "…")
    >>> describe(shared, "zh", {1: "西湖", 2: "灵隐寺"})
    '在景点 西湖、灵隐寺 入园 2 次，间隔短于两地间所需时间：票证可能被共用'
"""

from __future__ import annotations

from collections.abc import Mapping

from citypass.issuer.console.sitenames import title_of
from citypass.issuer.incidents import Incident

#: kind: (zh, en) — every kind the issuer finds (docs/issuer.md, "Incidents").
KIND_NAMES: dict[str, tuple[str, str]] = {
    "double_use": ("重复使用", "Double use"),
    "passback_flagged": ("防回传提醒", "Passback flagged"),
    "passback_denied": ("防回传拒绝", "Passback denied"),
    "forged_code": ("伪造票证", "Forged code"),
    "replayed_code": ("重放动态码", "Replayed code"),
    "revoked_presented": ("出示已吊销票证", "Revoked code shown"),
    "clock_untrusted": ("闸机时钟异常", "Gate clock behind"),
    "shared_pass": ("疑似共用票证", "Shared pass"),
    "gate_jumper": ("无进站出站", "Exit without entry"),
    "benefit_over_quota": ("惠民卡超额使用", "Benefit card over quota"),
    "quarantined_upload": ("上传被隔离", "Quarantined upload"),
    "id_collision": ("事件编号冲突", "Event id collision"),
}

#: kind: the Chinese description, with {n} (taps or events), {gates} and {sites}.
ZH_DETAILS: dict[str, str] = {
    "double_use": "单次票证被多次使用：入场 {n} 次，闸机 {gates}",
    "passback_flagged": "防回传时段内再次入园（已放行并记录），景点 {sites}",
    "passback_denied": "防回传拒绝入园，票证可能被他人共用，景点 {sites}",
    "forged_code": "伪造或外来票证尝试 {n} 次，闸机 {gates}",
    "replayed_code": "重放或过期的动态码 {n} 次，闸机 {gates}",
    "revoked_presented": "已吊销票证或挂失手机出示 {n} 次，闸机 {gates}",
    "clock_untrusted": "闸机 {gates} 在时钟落后于账本时判定了 {n} 次刷卡",
    "shared_pass": "在景点 {sites} 入园 {n} 次，间隔短于两地间所需时间：票证可能被共用",
    "gate_jumper": "在 {gates} 出站前没有进站记录：乘客可能逃票或尾随进站",
    "benefit_over_quota": "惠民卡本期使用 {n} 次，超过配额",
    "quarantined_upload": "来自 {gates} 的 {n} 条事件被隔离",
    "id_collision": "来自 {gates} 的 {n} 条事件重用了其他设备的事件编号",
}


def kind_name(kind: str, lang: str) -> str:
    """The kind's name in ``lang``; an unknown kind is shown as its code."""
    names = KIND_NAMES.get(kind)
    if names is None:
        return kind
    return names[0] if lang == "zh" else names[1]


def describe(incident: Incident, lang: str, site_titles: Mapping[int, str] | None = None) -> str:
    """The incident in ``lang``: English is its stored sentence; Chinese is built from its fields (the stored
    sentence for a kind this module does not know), each site by its title in ``site_titles`` (from
    :func:`.sitenames.site_titles`; a site not there, by its number)."""
    template = ZH_DETAILS.get(incident.kind)
    if lang != "zh" or template is None:
        return incident.detail
    return template.format(n=len(incident.tap_ids), gates="、".join(incident.gate_ids) or "—",
                           sites="、".join(title_of(site_titles or {}, s) for s in incident.sites) or "—")


__all__ = ["KIND_NAMES", "ZH_DETAILS", "describe", "kind_name"]
