"""Personal data redaction before text leaves the machine, with a local mapping to restore it.

Recognised: e-mail addresses, Chinese resident ID numbers (checksum verified), bank card numbers
(13-19 digits passing the Luhn check), Chinese mobile numbers, Chinese landlines (area code
0xx/0xxx), international numbers (+country code), and street addresses (Chinese: a road / street
/ lane and a house number, optionally after province / city / district; English: a house number,
a street name and a street type). Each distinct value becomes a placeholder such as
``[PHONE_1]``; :meth:`Redactor.restore` puts the values back into text that comes back (a reply
draft), so it can be re-personalised locally. Order ids and SKUs are left alone: long digit runs
count as card numbers only when they pass the Luhn check and as IDs only with a valid checksum.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

# Names as Chinese service text writes them: a surname with a title (王先生, 李经理) or a staff
# nickname (客服小王). The surnames are the hundred most common.
_SURNAMES = (
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈姚卢姜"
    "崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤"
)
ZH_NAME = re.compile(
    rf"[\u4e00-\u9fff](?:先生|女士|小姐)|[{_SURNAMES}](?:经理|主管|师傅|专员)|小[{_SURNAMES.replace('于', '')}]"
)
EN_NAME = re.compile(r"\b(?:Mr|Mrs|Ms|Miss|Dr)\.?\s+[A-Z][a-z]+")
# People named with a surname and a title or with an English title: narrower than ZH_NAME (no
# nicknames like 小王, no 客服小姐姐), for masking names out of the classifier's features.
PERSON_NAME = re.compile(rf"[{_SURNAMES}](?:先生|女士|小姐(?!姐)|经理|主管|师傅|专员)|{EN_NAME.pattern}")


_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"

EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
CN_ID = re.compile(
    r"(?<![0-9A-Za-z])[1-9]\d{5}(?:19|20)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])\d{3}[\dXx](?![0-9A-Za-z])"
)
CARD = re.compile(r"(?<![0-9A-Za-z+-])[3-6](?:\d[ -]?){11,17}\d(?![0-9A-Za-z-])")  # Visa, MC, UnionPay, Amex, JCB
CN_MOBILE = re.compile(r"(?<![0-9A-Za-z])(?:\+?86[ -]?)?1[3-9]\d[ -]?\d{4}[ -]?\d{4}(?![0-9A-Za-z])")
CN_LANDLINE = re.compile(r"(?<![0-9A-Za-z])(?:\(0\d{2,3}\)|0\d{2,3})[ -]?\d{7,8}(?:-\d{1,4})?(?![0-9A-Za-z])")
INTL_PHONE = re.compile(
    r"(?<![0-9A-Za-z])\+(?!86)\d{1,3}[ .-]?(?:\(\d{1,4}\)[ .-]?)?\d{2,4}(?:[ .-]?\d{2,4}){1,3}(?![0-9A-Za-z])"
)
CN_ADDRESS = re.compile(
    r"(?:[\u4e00-\u9fff]{2,3}(?:省|自治区))?(?:[\u4e00-\u9fff]{2,4}市)?(?:[\u4e00-\u9fff]{1,5}(?:区|县|镇|乡))?"
    r"[\u4e00-\u9fff0-9]{1,12}(?:路|街|大道|道|巷|弄|胡同)[0-9一二三四五六七八九十]{1,6}(?:号|號)"
    r"(?:[0-9A-Za-z一二三四五六七八九十]{1,6}(?:栋|幢|座|号楼|单元|室|层|楼)){0,4}"
)
EN_ADDRESS = re.compile(
    r"\b\d{1,6}\s+(?:[A-Z][a-z]+\s+){1,4}(?:Street|St|Road|Rd|Avenue|Ave|Boulevard|Blvd|Lane|Ln|Drive|Dr|Court|Ct|"
    r"Way|Place|Pl|Terrace|Highway|Hwy)\b\.?(?:,?\s*(?:Apt|Suite|Unit|#)\s*[\w-]+)?"
)


def _id_valid(s: str) -> bool:
    s = s.upper()
    total = sum(int(c) * w for c, w in zip(s[:17], _ID_WEIGHTS, strict=True))
    return _ID_CHECK[total % 11] == s[17]


def _luhn(digits: str) -> bool:
    total = 0
    for i, c in enumerate(reversed(digits)):
        d = int(c)
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


@dataclass
class Redactor:
    """Replaces personal data with placeholders and remembers the mapping (one per conversation)."""

    mapping: dict[str, str] = field(default_factory=dict)  # placeholder -> original
    _reverse: dict[str, str] = field(default_factory=dict)
    _counts: dict[str, int] = field(default_factory=dict)

    def _token(self, kind: str, value: str) -> str:
        key = f"{kind}:{value}"
        if key not in self._reverse:
            self._counts[kind] = self._counts.get(kind, 0) + 1
            token = f"[{kind}_{self._counts[kind]}]"
            self._reverse[key] = token
            self.mapping[token] = value
        return self._reverse[key]

    def redact(self, text: str) -> str:
        """``text`` with every recognised personal value replaced by its placeholder."""
        if not text:
            return text

        def sub(kind: str, rx: re.Pattern[str], check: object = None) -> None:
            nonlocal text

            def repl(m: re.Match[str]) -> str:
                value = m.group(0)
                if check is not None and not check(value):  # type: ignore[operator]
                    return value
                return self._token(kind, value)

            text = rx.sub(repl, text)

        sub("EMAIL", EMAIL)
        sub("ID", CN_ID, _id_valid)
        sub("PHONE", CN_MOBILE)
        sub("CARD", CARD, lambda v: _luhn(re.sub(r"\D", "", v)) and 13 <= len(re.sub(r"\D", "", v)) <= 19)
        sub("PHONE", INTL_PHONE, lambda v: len(re.sub(r"\D", "", v)) >= 8)
        sub("PHONE", CN_LANDLINE)
        sub("ADDRESS", CN_ADDRESS)
        sub("ADDRESS", EN_ADDRESS)
        return text

    def restore(self, text: str) -> str:
        """Put the original values back for every placeholder this redactor issued."""
        for token, value in self.mapping.items():
            text = text.replace(token, value)
        return text


def redact(text: str) -> str:
    """One-off redaction (no mapping kept)."""
    return Redactor().redact(text)
