"""Planted customer histories: customers -> orders -> chats / tickets -> later reviews and surveys.

Each customer (``customer_id``) places orders (``order_id``); some orders go wrong (a late parcel,
a defect, a wrong item, a refund that does not come). The customer then contacts service once or
more, each contact is resolved or not, and some customers go on to review the order: the ones
who were let down, contacted again and again or left unresolved review worse, and some customers
review far more often than others whatever happened. Some orders also get an NPS survey answer
(0-10). The outcome of every order is drawn from that story, so which customers later left a bad
review is a planted fact the at-risk list (:mod:`agent.at_risk`) is measured against, and a model
that learns from a store's history has something real to learn: who reviews, and what follows
which signals.

``python -m retrieval.journeys`` regenerates ``retrieval/data/sample/journeys.csv`` and
``journey_resolutions.csv`` (the demo's, as of the sample's reference date) and the eval set
``evals/datasets/at_risk_default.csv`` (another seed: other customers, orders and ids); a test checks
the committed files match. All texts are written for this project.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from retrieval.sample_data import BAD_CARRIER, CARRIERS, PRODUCTS, SAMPLE_AS_OF, SAMPLE_DIR, TIERS, Product, write_csv

JOURNEY_COLUMNS = [
    "id",
    "customer_id",
    "order_id",
    "text",
    "created_at",
    "channel",
    "customer_tier",
    "product",
    "carrier",
    "rating",
    "nps",
]
RESOLUTION_COLUMNS = ["id", "feedback_id", "action", "reply", "outcome", "resolved_at"]
EVAL_PATH = Path(__file__).resolve().parent.parent / "evals" / "datasets" / "at_risk_default.csv"
CONTACT_CHANNELS = ["online_chat", "online_chat", "ticket", "email", "weibo"]
REVIEW_CHANNELS = ["app_review", "app_review", "mini_program"]

# Per issue kind: first contact (zh, en), a later contact (zh, en), the lag from the order to the
# first contact in days, and how much the issue alone annoys.
ISSUES: dict[str, dict[str, Any]] = {
    "delay": {
        "first": [
            (
                "订单{o}下单{d}天了还没收到，{c}的物流一直没更新",
                "Order {o} was placed {d} days ago and {c} tracking has not moved",
            ),
            ("快递怎么还没到？{c}显示在途好几天了", "Where is my parcel? {c} has shown it in transit for days"),
        ],
        "again": [
            (
                "第{n}次问了，订单{o}还是没到，到底什么时候能送到？",
                "This is my contact number {n}: order {o} still has not arrived",
            ),
            ("上次说会帮我催快递，到现在还是没消息", "Last time you said you would chase the courier, still nothing"),
        ],
        "lag": (3, 7),
        "annoy": 0.35,
    },
    "defect": {
        "first": [
            ("{p}收到就坏了，{part}有问题，怎么处理？", "The {pe} arrived broken, the {parte} does not work"),
            ("{p}用了两天{part}就不行了", "The {parte} of my {pe} failed after two days"),
        ],
        "again": [
            (
                "{p}的问题第{n}次联系了，换货到底怎么弄？",
                "Contact number {n} about the broken {pe}, how do I get a replacement?",
            ),
            ("说好的换货一直没人安排，{part}还是坏的", "Nobody arranged the replacement, the {parte} is still broken"),
        ],
        "lag": (4, 10),
        "annoy": 0.5,
    },
    "wrong_item": {
        "first": [
            ("收到的{p}规格不对，和下单的不一样", "I received the wrong {pe}, not what I ordered"),
            ("包裹里少了一件，订单{o}只收到一部分", "One item is missing from order {o}"),
        ],
        "again": [
            ("第{n}次说了，发错的货怎么退？没人回复", "Contact number {n}: how do I return the wrong item? No answer"),
            ("少发的那件到现在还没补发", "The missing item still has not been sent"),
        ],
        "lag": (3, 8),
        "annoy": 0.4,
    },
    "refund": {
        "first": [
            ("退货已经寄回{d}天了，退款还没到账", "I returned the item {d} days ago and the refund has not arrived"),
            ("申请退款好几天了一直在审核中", "My refund request has been under review for days"),
        ],
        "again": [
            ("退款第{n}次催了，还是没到账", "Contact number {n} about my refund, still not received"),
            ("客服说三天到账，现在一周了", "Service said three days for the refund, it has been a week"),
        ],
        "lag": (8, 15),
        "annoy": 0.45,
    },
}
ISSUE_WEIGHTS = {"delay": 0.4, "defect": 0.3, "wrong_item": 0.15, "refund": 0.15}
ACTIONS = {
    "delay": ("联系快递加急派送并补偿5元券", "Asked the courier to rush the delivery and gave a 5 yuan voucher"),
    "defect": ("安排换新并上门取件", "Arranged a replacement with pickup"),
    "wrong_item": ("补发正确商品并寄回错发件", "Sent the right item and a return label"),
    "refund": ("财务加急处理退款", "Finance rushed the refund"),
}
REVIEWS: dict[str, list[tuple[str, str]]] = {
    "bad": [
        ("{p}差评，问题拖了这么久没人管", "Terrible: my {pe} problem dragged on and nobody cared"),
        ("再也不会买了，售后太差", "Never buying again, after-sales service is awful"),
        ("体验很差，联系了好几次客服都没用", "Bad experience, contacted service several times for nothing"),
    ],
    "mid": [
        ("{p}还行，就是中间出了点问题", "The {pe} is fine, though there was a problem on the way"),
        ("一般吧，问题最后解决了", "Average, the problem got solved in the end"),
    ],
    "good": [
        ("{p}很好用，物流也快", "The {pe} works great and arrived fast"),
        ("满意，会回购", "Happy with it, will buy again"),
        ("质量不错，推荐", "Good quality, recommended"),
    ],
}
SURVEYS = {
    "promoter": ("会推荐给朋友，{p}不错", "Would recommend, the {pe} is good"),
    "passive": ("还可以，看情况推荐", "It is OK, might recommend"),
    "detractor": ("不会推荐，这次购物体验不好", "Would not recommend, this order went badly"),
}


@dataclass
class _Order:
    id: str
    at: datetime
    product: Product
    carrier: str


def generate_journeys(
    customers: int = 300, weeks: int = 12, seed: int = 20261130, end: datetime = SAMPLE_AS_OF
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Feedback rows (contacts, reviews, surveys) and resolution rows, deterministically.

    Records run from ``weeks`` before ``end`` up to ``end``; what would happen after ``end`` is not
    written, so the last weeks hold open stories whose ending is unknown, as in a live store.
    """
    rng = random.Random(seed)
    start = end - timedelta(weeks=weeks)
    rows: list[dict[str, Any]] = []
    resolutions: list[dict[str, Any]] = []
    for n in range(1, customers + 1):
        cid = f"C{seed % 1000:03d}{n:05d}"
        tier = rng.choice(TIERS)
        english = rng.random() < 0.2
        reviewer = rng.random() < 0.3  # some customers review nearly every order, most rarely do
        review_p = 0.75 if reviewer else 0.15
        harsh = rng.uniform(-0.15, 0.15)  # how hard a customer judges
        for _ in range(rng.choice([1, 1, 2, 2, 3, 4])):
            at = start + timedelta(seconds=rng.randrange(int((end - start).total_seconds())))
            order = _Order(f"{at:%y%m%d}{rng.randrange(10**7, 10**8)}", at, rng.choice(PRODUCTS), rng.choice(CARRIERS))
            base = {"customer_id": cid, "order_id": order.id, "customer_tier": tier, "product": order.product.name}
            _order_story(rng, order, base, english, review_p, harsh, end, rows, resolutions)
    rows.sort(key=lambda r: (r["created_at"], r["id"]))
    resolutions.sort(key=lambda r: (r["resolved_at"], r["id"]))
    return rows, resolutions


def _order_story(
    rng: random.Random,
    order: _Order,
    base: dict[str, Any],
    english: bool,
    review_p: float,
    harsh: float,
    end: datetime,
    rows: list[dict[str, Any]],
    resolutions: list[dict[str, Any]],
) -> None:
    lang = 1 if english else 0
    slots = {
        "o": order.id,
        "p": order.product.name,
        "pe": order.product.en,
        "part": order.product.part,
        "parte": order.product.part_en,
        "c": order.carrier,
    }

    def add(when: datetime, text: str, channel: str, **more: Any) -> dict[str, Any] | None:
        if when >= end:
            return None
        row = {
            "id": f"J{base['customer_id'][1:]}-{len(rows) + 1:06d}",
            "text": text,
            "created_at": when.strftime("%Y-%m-%d %H:%M:%S"),
            "channel": channel,
            "carrier": order.carrier if channel not in REVIEW_CHANNELS else "",
            "rating": "",
            "nps": "",
            **base,
            **more,
        }
        rows.append(row)
        return row

    annoyance = harsh
    last = order.at
    if rng.random() < 0.4:
        kind = rng.choices(list(ISSUE_WEIGHTS), list(ISSUE_WEIGHTS.values()))[0]
        if kind == "delay":  # as in the sample, one carrier is behind most late parcels
            order.carrier = BAD_CARRIER if rng.random() < 0.75 else rng.choice(CARRIERS[1:])
            slots["c"] = order.carrier
        issue = ISSUES[kind]
        annoyance += issue["annoy"]
        when = order.at + timedelta(days=rng.uniform(*issue["lag"]))
        contacts = 0
        solved = False
        while not solved and contacts < 4:
            contacts += 1
            pool = issue["first"] if contacts == 1 else issue["again"]
            text = rng.choice(pool)[lang].format(d=rng.randint(5, 12), n=contacts, **slots)
            row = add(when, text, rng.choice(CONTACT_CHANNELS))
            if row is None:
                return
            last = when
            # a fast fix at the first contact calms most people; each further contact annoys more
            solved = rng.random() < (0.55 if contacts == 1 else 0.45)
            if contacts > 1:
                annoyance += 0.2
            took = timedelta(hours=rng.uniform(2, 60))
            if when + took < end and (solved or rng.random() < 0.5):
                act = ACTIONS[kind][lang].format(**slots)
                resolutions.append(
                    {
                        "id": "JR" + row["id"][1:],
                        "feedback_id": row["id"],
                        "action": act,
                        "reply": act,
                        "outcome": "resolved" if solved else rng.choice(["unresolved", "escalated"]),
                        "resolved_at": (when + took).strftime("%Y-%m-%d %H:%M:%S"),
                    }
                )
            if solved:
                annoyance -= 0.25 if contacts == 1 else 0.1
            else:
                when += timedelta(days=rng.uniform(2, 6))
        if not solved:
            annoyance += 0.35
    if rng.random() < 0.25:  # an NPS survey a week after the order
        nps = max(0, min(10, round(9 - 12 * annoyance + rng.gauss(0, 1.2))))
        group = "promoter" if nps >= 9 else "passive" if nps >= 7 else "detractor"
        add(order.at + timedelta(days=rng.uniform(6, 9)), SURVEYS[group][lang].format(**slots), "survey", nps=nps)
    if rng.random() < min(0.95, review_p * (1 + annoyance)):
        when = last + timedelta(days=rng.uniform(1, 12))
        score = 4.6 - 5 * annoyance + rng.gauss(0, 0.6)
        rating = max(1, min(5, round(score)))
        pool = REVIEWS["bad" if rating <= 2 else "mid" if rating == 3 else "good"]
        add(when, rng.choice(pool)[lang].format(**slots), rng.choice(REVIEW_CHANNELS), rating=rating)


def main() -> None:
    """Regenerate the demo's journeys and the at-risk eval set."""
    rows, resolutions = generate_journeys()
    write_csv(SAMPLE_DIR / "journeys.csv", rows, JOURNEY_COLUMNS)
    write_csv(SAMPLE_DIR / "journey_resolutions.csv", resolutions, RESOLUTION_COLUMNS)
    rows, resolutions = generate_journeys(customers=1500, seed=EVAL_SEED, end=EVAL_END)
    write_csv(EVAL_PATH, rows, JOURNEY_COLUMNS)
    write_csv(EVAL_PATH.with_name("at_risk_default_resolutions.csv"), resolutions, RESOLUTION_COLUMNS)
    print(f"{len(rows)} eval rows, {len(resolutions)} eval resolutions")


EVAL_SEED = 7351  # other customers and orders than the demo's (ids carry the seed)
EVAL_END = SAMPLE_AS_OF

if __name__ == "__main__":
    main()
