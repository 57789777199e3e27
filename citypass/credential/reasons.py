"""The stable list of decision reasons a gate can give, with the messages visitors see.

Every deny (and every flag on an allow) is one :class:`Reason`. The *value* of each member is a
snake_case code that is part of the project's interfaces: it appears in tap records, logs, the JSON of
``citypass gate check``, the issuer's incident reports and docs/credential-format.md. Codes are never
renamed or reused; new ones are only ever added.

Each reason carries a short message in Chinese and in English, short enough for a gate's display::

    >>> Reason.EXPIRED.message("zh")
    '凭证已过期'
    >>> Reason.EXPIRED.message("en")
    'Pass expired'
"""

from __future__ import annotations

from enum import StrEnum


class Reason(StrEnum):
    """Why a presentation was denied (or flagged). The value is the stable code."""

    # -- reading the code ---------------------------------------------------------------------------
    NOT_CITYPASS = "not_citypass"
    UNSUPPORTED_VERSION = "unsupported_version"
    MALFORMED_CODE = "malformed_code"
    UNSUPPORTED_FORMAT = "unsupported_format"
    # -- keys and signatures --------------------------------------------------------------------------
    UNKNOWN_KEY = "unknown_key"
    BAD_SIGNATURE = "bad_signature"
    KEY_NOT_YET_VALID = "key_not_yet_valid"
    KEY_RETIRED = "key_retired"
    KEY_OUT_OF_SCOPE = "key_out_of_scope"
    UNKNOWN_PRODUCT = "unknown_product"
    # -- partner platforms (federation in the trust list) -------------------------------------------------
    UNKNOWN_PARTNER = "unknown_partner"
    PARTNER_REVOKED = "partner_revoked"
    WRONG_PRODUCT = "wrong_product"
    # -- revocation -----------------------------------------------------------------------------------
    REVOKED = "revoked"
    HOLDER_REVOKED = "holder_revoked"
    # -- holder-bound (dynamic) codes -----------------------------------------------------------------
    DYNAMIC_REQUIRED = "dynamic_required"
    BAD_HOLDER_SIGNATURE = "bad_holder_signature"
    PRESENTATION_EXPIRED = "presentation_expired"
    PRESENTATION_FROM_FUTURE = "presentation_from_future"
    REPLAYED_PRESENTATION = "replayed_presentation"
    # -- where and when -------------------------------------------------------------------------------
    WRONG_SITE = "wrong_site"
    MODE_NOT_ALLOWED = "mode_not_allowed"
    NOT_YET_VALID = "not_yet_valid"
    EXPIRED = "expired"
    SLOT_NOT_STARTED = "slot_not_started"
    SLOT_ENDED = "slot_ended"
    # -- usage (needs the gate's ledger) --------------------------------------------------------------
    ALREADY_USED = "already_used"
    PASSBACK = "passback"
    NOT_TAPPED_IN = "not_tapped_in"
    ALREADY_TAPPED_IN = "already_tapped_in"
    SITE_FULL = "site_full"
    SITE_CLOSED = "site_closed"
    QUOTA_EXHAUSTED = "quota_exhausted"
    QUOTA_UNCONFIRMED = "quota_unconfirmed"
    # -- the gate's own condition ---------------------------------------------------------------------
    LEDGER_STALE = "ledger_stale"
    CLOCK_UNTRUSTED = "clock_untrusted"
    CLOCK_LEEWAY = "clock_leeway"
    SITE_NOT_CONFIGURED = "site_not_configured"
    DECISION_TIMEOUT = "decision_timeout"
    OUT_OF_ORDER = "out_of_order"

    def message(self, lang: str = "en") -> str:
        """The visitor-facing message in ``"zh"`` or ``"en"`` (anything else gives English)."""
        zh, en = MESSAGES[self]
        return zh if lang == "zh" else en

    @property
    def zh(self) -> str:
        return MESSAGES[self][0]

    @property
    def en(self) -> str:
        return MESSAGES[self][1]


#: (Chinese, English) message per reason. Kept beside the enum so a new reason cannot lack one
#: (a test checks that every member has an entry).
MESSAGES: dict[Reason, tuple[str, str]] = {
    Reason.NOT_CITYPASS: ("不是文旅一码通二维码", "Not a City Pass code"),
    Reason.UNSUPPORTED_VERSION: ("二维码版本不受支持，请更新应用", "Code version not supported; update the app"),
    Reason.MALFORMED_CODE: ("二维码无法识别", "Code is damaged or incomplete"),
    Reason.UNSUPPORTED_FORMAT: ("本闸机暂不支持此类二维码", "This gate cannot read this kind of code"),
    Reason.UNKNOWN_KEY: ("签发机构未知", "Unknown issuer key"),
    Reason.BAD_SIGNATURE: ("二维码签名无效", "Invalid signature"),
    Reason.KEY_NOT_YET_VALID: ("签发密钥尚未生效", "Issuer key not yet valid"),
    Reason.KEY_RETIRED: ("签发密钥已停用，请刷新二维码", "Issuer key retired; refresh your code"),
    Reason.KEY_OUT_OF_SCOPE: ("签发机构无权签发此凭证", "Issuer not authorised for this pass"),
    Reason.UNKNOWN_PRODUCT: ("本闸机不支持此类凭证", "This gate does not accept this kind of pass"),
    Reason.UNKNOWN_PARTNER: ("未接入的合作平台二维码", "Code from a platform not connected here"),
    Reason.PARTNER_REVOKED: ("该合作平台已停止接入", "This partner platform is no longer accepted"),
    Reason.WRONG_PRODUCT: ("此类凭证不适用于本闸机", "This kind of pass is not accepted here"),
    Reason.REVOKED: ("凭证已作废", "Pass revoked"),
    Reason.HOLDER_REVOKED: ("此手机已挂失", "This phone was reported lost"),
    Reason.DYNAMIC_REQUIRED: ("请出示动态二维码", "Show the live (dynamic) code"),
    Reason.BAD_HOLDER_SIGNATURE: ("动态码签名无效", "Invalid live-code signature"),
    Reason.PRESENTATION_EXPIRED: ("二维码已过期，请刷新", "Code expired; refresh it"),
    Reason.PRESENTATION_FROM_FUTURE: ("手机时间不正确", "Phone clock is wrong"),
    Reason.REPLAYED_PRESENTATION: ("二维码已被使用，请刷新", "Code already used; refresh it"),
    Reason.WRONG_SITE: ("凭证不适用于本景点/场馆", "Pass not valid at this site"),
    Reason.MODE_NOT_ALLOWED: ("凭证不适用于此交通方式", "Pass not valid on this transport"),
    Reason.NOT_YET_VALID: ("凭证尚未生效", "Pass not yet valid"),
    Reason.EXPIRED: ("凭证已过期", "Pass expired"),
    Reason.SLOT_NOT_STARTED: ("未到预约时段", "Your time slot has not started"),
    Reason.SLOT_ENDED: ("预约时段已过", "Your time slot has ended"),
    Reason.ALREADY_USED: ("凭证已使用", "Pass already used"),
    Reason.PASSBACK: ("刚刚已入园，请稍后再试", "Entered recently; try again later"),
    Reason.NOT_TAPPED_IN: ("无进站记录", "No tap-in recorded"),
    Reason.ALREADY_TAPPED_IN: ("已进站，请先出站", "Already tapped in; tap out first"),
    Reason.SITE_FULL: ("已达最大承载量", "Site is at capacity"),
    Reason.SITE_CLOSED: ("不在开放时间", "Site is closed now"),
    Reason.QUOTA_EXHAUSTED: ("惠民卡本期次数已用完", "Benefit card: no uses left this period"),
    Reason.QUOTA_UNCONFIRMED: ("网络中断，惠民卡暂不能再次使用", "Gate offline: benefit use cannot be confirmed"),
    Reason.LEDGER_STALE: ("闸机数据过旧", "Gate data out of date"),
    Reason.CLOCK_UNTRUSTED: ("闸机时钟异常", "Gate clock not trusted"),
    Reason.CLOCK_LEEWAY: ("按时钟容差放行", "Admitted within the clock leeway"),
    Reason.SITE_NOT_CONFIGURED: ("闸机未配置本站点", "Gate not configured for this site"),
    Reason.DECISION_TIMEOUT: ("处理超时", "Decision timed out"),
    Reason.OUT_OF_ORDER: ("暂停服务", "Out of order"),
}
