"""Complaint texts of the synthetic world: a factual sentence per category, plus venting words.

DESIGN.md case 7: venting words ("always", "every time", "useless company"; 总是, 经常, 破公司)
signal emotion rather than fact, and angry customers use them more. Texts are assembled from
integer codes with polars so that millions of complaints cost no Python loop.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from features.contract import COMPLAINT_CATEGORIES

LANGUAGES: tuple[str, ...] = ("en", "zh")

# One factual sentence per category and language, in COMPLAINT_CATEGORIES order.
FACTS: dict[str, tuple[tuple[str, ...], ...]] = {
    "en": (
        ("The invoice charged us twice.", "The amount on the bill is wrong."),
        ("The product stopped working after the update.", "The delivered unit is faulty."),
        ("The service was down for most of the day.", "We lost access to the system."),
        ("The delivery arrived late.", "Part of the order was missing."),
        ("The agent on the phone was rude.", "Nobody called us back as promised."),
        ("How do we export the monthly report?", "Your tool does not do what we need."),
        ("We need a custom change to the workflow.", "Please add a special field for us."),
        ("The new price is too high.", "We were not told about the price increase."),
    ),
    "zh": (
        ("发票重复扣费。", "账单金额不对。"),
        ("更新以后产品不能用了。", "收到的设备有故障。"),
        ("服务一整天都断了。", "我们无法登录系统。"),
        ("送货晚了。", "订单少了一部分。"),
        ("客服态度很差。", "说好回电话却没人回。"),
        ("怎么导出月度报表？", "你们的工具做不到我们要的。"),
        ("我们需要定制工作流程。", "请给我们加一个特殊字段。"),
        ("新价格太高了。", "涨价没有通知我们。"),
    ),
}

# Venting phrases: the words a features lexicon should count.
VENTING: dict[str, tuple[str, ...]] = {
    "en": (
        "This always happens.",
        "Every time the same problem!",
        "Useless company.",
        "You never fix anything.",
        "Ridiculous, the worst service ever.",
    ),
    "zh": ("总是这样！", "经常出问题。", "破公司！", "每次都一样。", "垃圾服务。"),
}

if any(len(FACTS[lang]) != len(COMPLAINT_CATEGORIES) for lang in LANGUAGES):
    raise ValueError("every language needs one fact list per complaint category")

_VARIANTS = 2


def complaint_texts(
    language: np.ndarray,
    category: np.ndarray,
    vents: np.ndarray,
    rng: np.random.Generator,
) -> pl.Series:
    """Build complaint texts from codes.

    Args:
        language: index into LANGUAGES per complaint.
        category: index into COMPLAINT_CATEGORIES per complaint.
        vents: number of venting phrases per complaint (0, 1 or 2).
        rng: random generator (variant and phrase choice).

    Returns:
        A string Series, one text per complaint.
    """
    n = len(category)
    variant = rng.integers(0, _VARIANTS, n)
    fact_table = [
        FACTS[lang][cat][var]
        for lang in LANGUAGES
        for cat in range(len(COMPLAINT_CATEGORIES))
        for var in range(_VARIANTS)
    ]
    fact_code = (language * len(COMPLAINT_CATEGORIES) + category) * _VARIANTS + variant
    n_phrases = len(VENTING["en"])
    vent_table = [phrase for lang in LANGUAGES for phrase in VENTING[lang]]
    first = language * n_phrases + rng.integers(0, n_phrases, n)
    second = (
        language * n_phrases
        + (first % n_phrases + 1 + rng.integers(0, n_phrases - 1, n)) % n_phrases
    )
    separator = np.where(language == 0, " ", "")
    frame = pl.DataFrame(
        {
            "fact": pl.Series(fact_table).gather(fact_code),
            "vent1": pl.Series(vent_table).gather(first),
            "vent2": pl.Series(vent_table).gather(second),
            "vents": vents,
            "sep": separator,
        }
    )
    return frame.select(
        pl.concat_str(
            pl.col("fact"),
            pl.when(pl.col("vents") >= 1)
            .then(pl.col("sep") + pl.col("vent1"))
            .otherwise(pl.lit("")),
            pl.when(pl.col("vents") >= 2)
            .then(pl.col("sep") + pl.col("vent2"))
            .otherwise(pl.lit("")),
        ).alias("text")
    ).to_series()
