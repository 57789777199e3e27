"""The source table of every text a visitor reads: the reasons' messages and the words of the lane's screen and
the phone wallet, in Chinese and English.

This table is what the translation catalogs are built from (``citypass/credential/locale``, see
:mod:`citypass.credential.catalog`): each entry becomes one message of the gettext domain ``citypass``, keyed by a
stable, dotted id (``reason.passback``, ``screen.welcome``). The reasons' messages come from
:data:`citypass.credential.reasons.MESSAGES` unchanged, so the gate's log, ``citypass gate check`` and the screen
always say the same thing. Chinese and English are written here; every other language (ja, ko, …) is a
translation in its own ``.po`` file, made from the template without any change to code.

Placeholders are ``{name}`` fields, filled with :meth:`str.format` in Python and the same way in the browser::

    >>> SOURCE["screen.persons"]
    ('{n} 人通行', '{n} people may pass')
    >>> SOURCE["reason.passback"]
    ('刚刚已入园，请稍后再试', 'Entered recently; try again later')
"""

from __future__ import annotations

from citypass.credential.reasons import MESSAGES

#: Words of the lane's result screen (:mod:`citypass.gate.screen`) and the wallet page (the issuer's wallet).
#: ``(Chinese, English)`` by id; an id is never renamed or reused once translators have it.
TEXTS: dict[str, tuple[str, str]] = {
    # -- the lane's screen ------------------------------------------------------------------------------
    "screen.welcome": ("请通行", "Welcome"),
    "screen.persons": ("{n} 人通行", "{n} people may pass"),
    # the benefit card's uses left (citypass/credential/benefit.py), after an admission and in the wallet
    "benefit.left.month": ("惠民卡 · 本月剩余 {n} 次", "Benefit card · {n} uses left this month"),
    "benefit.left.week": ("惠民卡 · 本周剩余 {n} 次", "Benefit card · {n} uses left this week"),
    "benefit.left.year": ("惠民卡 · 本年剩余 {n} 次", "Benefit card · {n} uses left this year"),
    "screen.flagged": ("请通行，已记录", "Welcome; noted"),
    "screen.denied": ("未能通行", "Not admitted"),
    "screen.show_code": ("请出示二维码", "Show your code"),
    "screen.scanner": ("请将手机屏幕对准扫描口", "Hold your phone's screen to the scanner"),
    "screen.out_of_order": ("暂停服务", "Out of order"),
    "screen.use_other_lane": ("请使用其他通道", "Please use another lane"),
    "screen.camera_fault": ("扫描设备故障", "Scanner fault"),
    "screen.no_connection": ("显示屏未连接闸机", "Screen not connected to the gate"),
    "screen.fire": ("紧急疏散", "Emergency evacuation"),
    "screen.exit_this_way": ("闸门已打开，请从此处离开", "Gates are open: exit this way"),
    # -- what to do after a deny (the screen picks one per reason) ---------------------------------------
    "advice.refresh": ("请刷新二维码后重试", "Refresh your code and try again"),
    "advice.staff": ("请联系工作人员", "Please ask a member of staff"),
    "advice.other_entrance": ("请前往对应的入口", "Please use the right entrance"),
    "advice.later": ("请稍后再试", "Please try again later"),
    "advice.update_app": ("请更新应用", "Please update your app"),
    "advice.phone_clock": ("请检查手机时间设置", "Check your phone's clock"),
    # -- the phone wallet --------------------------------------------------------------------------------
    "wallet.title": ("文旅一码通", "City Pass"),
    "wallet.product.annual": ("景点年卡", "Annual scenic pass"),
    "wallet.product.reservation": ("场馆预约", "Museum reservation"),
    "wallet.product.transit": ("交通乘车码", "Transit pass"),
    "wallet.product.group": ("团队票", "Group ticket"),
    "wallet.product.benefit": ("文旅惠民卡", "Culture and tourism benefit card"),
    "wallet.product.event": ("会议活动证件", "Event badge"),
    "wallet.benefit": ("本期剩余", "Uses left"),
    "wallet.as_of": ("截至 {time}（离线）", "as of {time} (offline)"),
    "wallet.sites": ("适用景点", "Valid at"),
    "wallet.modes": ("适用交通", "Valid on"),
    "wallet.mode.metro": ("地铁", "Metro"),
    "wallet.mode.bus": ("公交", "Bus"),
    "wallet.mode.water_bus": ("水上巴士", "Water bus"),
    "wallet.party": ("{n} 人", "{n} people"),
    "wallet.valid_from": ("生效", "Valid from"),
    "wallet.valid_to": ("有效期至", "Valid until"),
    "wallet.live": ("动态码，截图无效", "Live code: a screenshot will not work"),
    "wallet.refresh_in": ("{s} 秒后刷新", "New code in {s} s"),
    "wallet.brightness": ("请调高屏幕亮度", "Turn up your screen brightness"),
    "wallet.claiming": ("正在领取…", "Claiming your pass…"),
    "wallet.refused": ("此领取链接已被使用或已失效", "This claim link has been used already or has expired"),
    "wallet.failed": ("领取失败，请稍后重试", "Could not claim the pass; try again later"),
    "wallet.no_pass": ("尚无凭证：请打开发卡机构发给您的领取链接",
                       "No pass yet: open the claim link your issuer sent you"),
    "wallet.offline": ("离线可用", "Works offline"),
    "wallet.unsupported": ("此浏览器不支持安全密钥，请更换浏览器",
                           "This browser cannot keep a secure key; use another"),
}

#: Every visitor text: ``reason.<code>`` for each decision reason, then :data:`TEXTS`.
SOURCE: dict[str, tuple[str, str]] = {f"reason.{r.value}": pair for r, pair in MESSAGES.items()} | TEXTS

#: The languages written in this table; the catalogs of these are rebuilt from it.
SOURCE_LANGUAGES = ("zh", "en")
