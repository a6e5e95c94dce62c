"""The bundled sample data set: bilingual e-commerce feedback with resolutions and planted trends.

All texts are written for this project (no third-party data). ``python -m retrieval.sample_data``
regenerates ``retrieval/data/sample/`` deterministically; a test checks the committed files match.

Planted trends (the known right answers later features are checked against), as of
``SAMPLE_AS_OF`` = Monday 2026-11-23 00:00 Asia/Shanghai; the last full ISO week is 2026-W47
(Nov 16-22):

1. **Product spike**: in 2026-W47, ``product_quality`` complaints jump (about 2.5x the weekly
   baseline), concentrated on the product ``智能保温杯 Pro`` (leaking lids, failing insulation).
2. **Carrier problem**: across all weeks, ``云达快运`` carries about a third of the orders with a
   carrier but about 70% of the ``logistics`` complaints.
3. **Promotion aftermath**: in 2026-W46 (the week of 11.11), ``price_promotion`` complaints
   (coupons not applying, price drops after purchase) roughly triple.

``SAMPLE_FACTS`` records the exact counts of the committed files, computed from the rows.
"""

from __future__ import annotations

import csv
import random
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from retrieval.records import FEEDBACK_FIELDS

SAMPLE_DIR = Path(__file__).parent / "data" / "sample"
SAMPLE_ZONE = ZoneInfo("Asia/Shanghai")
SAMPLE_AS_OF = datetime(2026, 11, 23, tzinfo=SAMPLE_ZONE)
FIRST_MONDAY = datetime(2026, 9, 21, tzinfo=SAMPLE_ZONE)  # 2026-W39
WEEKS = 9  # W39 .. W47
SPIKE_PRODUCT = "智能保温杯 Pro"
BAD_CARRIER = "云达快运"

FEEDBACK_COLUMNS = [f for f in FEEDBACK_FIELDS if f not in ("subcategory", "customer_id", "nps")]  # not in this sample
RESOLUTION_COLUMNS = ["id", "feedback_id", "action", "reply", "outcome", "compensation", "resolved_at"]


@dataclass(frozen=True)
class Product:
    name: str
    en: str
    sku: str
    price: int
    part: str  # a part that fails
    part_en: str


PRODUCTS = [
    Product("智能保温杯 Pro", "Pro smart thermos cup", "TB-PRO-500", 169, "杯盖", "lid"),
    Product("无线降噪耳机 A3", "A3 noise-cancelling earbuds", "EH-A3-BLK", 399, "右耳", "right earbud"),
    Product("纯棉四件套", "cotton bedding set", "BD-COT-150", 259, "被套", "duvet cover"),
    Product("儿童保温饭盒", "kids' insulated lunch box", "LB-KID-800", 89, "卡扣", "latch"),
    Product("扫地机器人 S8", "S8 robot vacuum", "RV-S8-WHT", 1599, "边刷", "side brush"),
    Product("TPE瑜伽垫", "TPE yoga mat", "YM-TPE-6", 79, "表面", "surface"),
    Product("便携咖啡机 Mini", "Mini portable coffee maker", "CM-MINI-01", 299, "电池", "battery"),
    Product("轻薄羽绒服", "light down jacket", "DJ-LITE-M", 459, "拉链", "zipper"),
]
CARRIERS = ["云达快运", "顺捷速递", "安通物流", "迅邦快递"]
CHANNELS = ["app_review", "online_chat", "ticket", "weibo", "email", "mini_program"]
REVIEW_CHANNELS = {"app_review", "mini_program"}
TIERS = ["regular", "regular", "regular", "silver", "gold", "platinum"]
REGIONS = ["广东", "浙江", "江苏", "上海", "北京", "四川", "湖北", "山东", "福建", "河南"]
NAMES = ["张", "王", "李", "赵", "陈", "刘"]

# Each template: (text, sentiment, urgency). Slots: {p} product, {pe} English product name,
# {part}/{parte} failing part, {c} carrier, {d} days, {n} number of contacts, {a} amount,
# {o} order number, {price}.
T = tuple[str, str, str]
ZH: dict[str, list[T]] = {
    "logistics": [
        ("下单{d}天了还没发货，物流一点动静都没有", "negative", "medium"),
        ("{c}的物流信息三天没更新了，包裹是不是丢了？", "negative", "medium"),
        ("快递显示已签收，可我根本没收到！订单{o}，钱付了东西没见着", "negative", "high"),
        ("{c}派送太慢了，同城居然走了{d}天", "negative", "medium"),
        ("快递员不打电话直接放驿站，还态度很差，说爱要不要", "negative", "medium"),
        ("收到的根本不是我买的{p}，是别人的包裹，面单上名字都不一样", "negative", "medium"),
        ("我们小区显示不在配送范围，{c}让我自己去二十公里外取件", "negative", "medium"),
        ("想改一下收货地址，下单才一个小时就说改不了了", "negative", "medium"),
        ("东西还行，就是物流有点慢，等了{d}天", "neutral", "low"),
        ("订单{o}卡在中转站{d}天不动，{c}客服电话一直打不通", "negative", "medium"),
        ("包裹被{c}退回了，我全程没接到任何电话", "negative", "medium"),
        ("呵呵，{c}真是神速，{d}天才走了两百公里", "negative", "medium"),
        ("说好的次日达，结果第{d}天才到，孩子生日都过了", "negative", "medium"),
        ("显示派送中两天了，{c}的快递员根本联系不上", "negative", "medium"),
    ],
    "product_quality": [
        ("{p}用了不到一周{part}就坏了，质量太差", "negative", "medium"),
        ("收到的{p}和详情页描述完全不一样，颜色差很多", "negative", "medium"),
        ("{p}的{part}有明显裂痕，像是二手的", "negative", "medium"),
        ("尺码表不准，按表买的{p}大了两个码", "negative", "medium"),
        ("{p}用了两次就开始掉色，洗一次褪一次", "negative", "medium"),
        ("{p}充电的时候发烫还冒烟，吓死我了，差点起火！", "negative", "critical"),
        ("说明书是全英文的，{p}的功能完全看不懂怎么设置", "negative", "medium"),
        ("呵呵，真是好质量，{p}刚拆开{part}就掉了", "negative", "medium"),
        ("{p}有很重的异味，放了一周还是刺鼻", "negative", "medium"),
        ("孩子用{p}的时候{part}的边缘把手划伤了，流了血，你们必须给个说法", "negative", "critical"),
        ("{p}总体还可以，就是{part}做工有点粗糙", "neutral", "low"),
        ("第二次买{p}了，这批{part}明显比上次薄，偷工减料", "negative", "medium"),
        ("{p}开机几分钟就自动关机，反复好几次了", "negative", "medium"),
    ],
    "packaging": [
        ("纸箱压得稀烂，{p}的盒子也变形了", "negative", "medium"),
        ("包裹到的时候箱子是湿的，里面的{p}都泡水了", "negative", "medium"),
        ("外箱被拆开过，胶带重新封的，很怀疑被人动过", "negative", "medium"),
        ("{p}就套了个塑料袋，一点防震泡沫都没有", "negative", "medium"),
        ("袋子漏了，洒得整个箱子都是", "negative", "medium"),
        ("包装过度了吧，一个小小的{p}套了三层盒子，很不环保", "neutral", "low"),
        ("礼盒包装太简陋了，本来想送人的，拿不出手", "negative", "medium"),
        ("箱子一角压扁了，好在{p}本身没坏，下次包装用点心", "neutral", "low"),
        ("快递盒破了个大洞，{p}的配件少了一个", "negative", "medium"),
        ("包装里全是碎泡沫，拆开弄得满地都是", "negative", "low"),
    ],
    "customer_service": [
        ("联系客服{n}次了都没人回复，到底有没有人管", "negative", "high"),
        ("在线客服排队排了四十分钟，前面还有{n}0个人", "negative", "medium"),
        ("机器人客服只会回复模板，问什么都答非所问", "negative", "medium"),
        ("客服态度非常差，直接挂我电话", "negative", "medium"),
        ("客服说好今天给我回电话，结果又没消息了，一直在敷衍", "negative", "high"),
        ("问题拖了两周还没解决，再不处理我就去12315投诉", "negative", "critical"),
        ("人工客服在哪？转了三次还是机器人", "negative", "medium"),
        ("客服承诺补发，到现在{d}天了什么都没有", "negative", "high"),
        ("客服回复太慢了，一个问题要等半天", "negative", "medium"),
        ("再不解决我就发微博曝光你们，让大家都看看", "negative", "critical"),
        ("客服让我拍视频又拍照片，折腾半天最后说没办法", "negative", "medium"),
    ],
    "after_sales": [
        ("申请退货{d}天了还没人审核", "negative", "medium"),
        ("退款说三到五个工作日到账，现在两周了钱还没到", "negative", "high"),
        ("退货运费凭什么要我出，是你们发错了货", "negative", "medium"),
        ("{p}申请换货，寄回去以后就没消息了", "negative", "medium"),
        ("保修期内{p}坏了，售后说要收{a}元维修费", "negative", "medium"),
        ("退货要扣{a}元手续费，这个规则下单时根本没说", "negative", "medium"),
        ("退款一直不到账，再不退我就找银行拒付", "negative", "critical"),
        ("{p}寄去维修一个月了还没寄回来", "negative", "medium"),
        ("仅退款被拒了，理由都不给一个", "negative", "medium"),
        ("七天无理由退货，结果说{p}拆封了不能退", "negative", "medium"),
        ("售后流程太复杂了，填了三张表还要打印快递单", "negative", "medium"),
    ],
    "price_promotion": [
        ("刚买的{p}第二天就降价{a}元，能不能保价？", "negative", "medium"),
        ("优惠券领了用不了，结算的时候显示不满足条件", "negative", "medium"),
        ("双十一活动规则太复杂了，算了半天也没搞懂满减怎么叠加", "negative", "medium"),
        ("{p}卖{price}元太贵了，别家同款便宜一百多", "negative", "low"),
        ("说好的买一送一，赠品根本没发", "negative", "medium"),
        ("优惠码输进去提示无效，明明还没过期", "negative", "medium"),
        ("预售付了定金，结果尾款时间的价格比现货还贵", "negative", "medium"),
        ("申请价保被拒，说活动价不在保价范围内，那还叫什么价保", "negative", "medium"),
        ("会员价和普通价居然一样，会员白开了", "negative", "medium"),
        ("满300减40的券，凑单到300以后又说不能用", "negative", "medium"),
    ],
    "app_website": [
        ("APP一打开就闪退，重装了也没用", "negative", "medium"),
        ("验证码一直收不到，登录不了账号", "negative", "high"),
        ("付款的时候扣了两次钱，订单只有一个！", "negative", "high"),
        ("结算页面一直转圈，付不了款", "negative", "high"),
        ("推送消息太多了，一天十几条，关都关不掉", "negative", "low"),
        ("新版APP的搜索太难用了，找个订单要翻好几页", "negative", "medium"),
        ("会员自动续费了我都不知道，设置里也找不到取消的地方", "negative", "medium"),
        ("网页版购物车的商品经常消失", "negative", "medium"),
        ("绑定手机号的时候一直报错，系统繁忙请稍后再试", "negative", "medium"),
        ("更新以后字体变得特别小，老人根本看不清", "negative", "low"),
    ],
    "suggestion": [
        ("希望{p}能出更多颜色，比如浅灰色", "neutral", "low"),
        ("建议APP增加按时间筛选订单的功能", "neutral", "low"),
        ("{p}要是有大一号的尺寸就好了", "neutral", "low"),
        ("能不能支持开电子发票到邮箱？", "neutral", "low"),
        ("建议在详情页放一个真人实拍视频，更直观", "neutral", "low"),
        ("希望可以选择送货时间段，上班时间家里没人", "neutral", "low"),
        ("{p}的配件能单独卖吗？想多买一个{part}", "neutral", "low"),
        ("建议出个家庭装，量大一点更划算", "neutral", "low"),
        ("如果客服能支持视频通话就更方便了", "neutral", "low"),
    ],
    "praise": [
        ("{p}质量很好，做工精细，五星好评", "positive", "low"),
        ("物流超快，昨天下单今天就到了，{c}的小哥也很热情", "positive", "low"),
        ("客服小姐姐特别耐心，问题很快就解决了，点赞", "positive", "low"),
        ("第三次回购了，{p}一如既往的好用", "positive", "low"),
        ("包装很用心，还送了小礼物，很惊喜", "positive", "low"),
        ("{p}性价比很高，推荐给朋友了", "positive", "low"),
        ("退货很顺利，退款当天就到账了，售后给力", "positive", "low"),
        ("{p}颜值很高，家里人都说好看", "positive", "low"),
        ("用了一个月了，{p}没出过任何问题，很满意", "positive", "low"),
        ("活动价买到的，很划算，下次还来", "positive", "low"),
    ],
    "other": [
        ("请问{p}什么时候补货？", "neutral", "low"),
        ("怎么开增值税专用发票？", "neutral", "low"),
        ("你们能寄到香港吗？运费怎么算", "neutral", "low"),
        ("{p}可以用在车上吗？", "neutral", "low"),
        ("请问有没有线下门店可以体验{p}", "neutral", "low"),
        ("企业批量采购有优惠吗？要五十个", "neutral", "low"),
        ("订单{o}的发票抬头写错了，能重开吗", "neutral", "low"),
        ("{p}的保修期是多久？", "neutral", "low"),
    ],
}
EN: dict[str, list[T]] = {
    "logistics": [
        ("Ordered {d} days ago and the tracking still says label created.", "negative", "medium"),
        ("Tracking says delivered but there is no parcel at my door. Order {o}.", "negative", "high"),
        ("{c} lost my package and nobody can tell me where it is.", "negative", "medium"),
        ("The courier left the box in the rain outside the building without calling.", "negative", "medium"),
        ("Shipping was fine but a bit slow, took {d} days.", "neutral", "low"),
        ("Got someone else's parcel instead of my {pe}.", "negative", "medium"),
    ],
    "product_quality": [
        ("The {parte} of my {pe} broke after a week.", "negative", "medium"),
        ("The {pe} looks nothing like the photos, the colour is way off.", "negative", "medium"),
        ("My {pe} started smoking while charging. This is a fire hazard!", "negative", "critical"),
        ("Size chart is wrong, the {pe} runs two sizes large.", "negative", "medium"),
        ("Oh great, another {pe} that stopped working on day two. Amazing quality.", "negative", "medium"),
        ("Decent {pe} overall, though the {parte} feels flimsy.", "neutral", "low"),
    ],
    "packaging": [
        ("The box was crushed and the {pe} inside was dented.", "negative", "medium"),
        ("Package arrived soaking wet, the {pe} box is ruined.", "negative", "medium"),
        ("No padding at all, the {pe} was rattling around in a huge box.", "negative", "medium"),
        ("Way too much plastic packaging for one small {pe}.", "neutral", "low"),
    ],
    "customer_service": [
        ("I have contacted support {n} times and nobody has replied.", "negative", "high"),
        ("The chat bot keeps sending canned answers, I need a human.", "negative", "medium"),
        ("Your agent was rude and hung up on me.", "negative", "medium"),
        ("If this is not solved by Friday I will contact my lawyer.", "negative", "critical"),
        ("Waited 45 minutes in the queue just to be told to send an email.", "negative", "medium"),
    ],
    "after_sales": [
        ("I returned the {pe} {d} days ago and still no refund.", "negative", "high"),
        ("Why do I have to pay return shipping when you sent the wrong item?", "negative", "medium"),
        ("Requested an exchange for my {pe}, no response for a week.", "negative", "medium"),
        ("Refund still missing. I will file a chargeback with my bank.", "negative", "critical"),
        ("Warranty repair for the {pe} is taking forever.", "negative", "medium"),
    ],
    "price_promotion": [
        (
            "The price of the {pe} dropped by {a} yuan the day after I bought it. Price protection?",
            "negative",
            "medium",
        ),
        ("My discount code says invalid at checkout even though it has not expired.", "negative", "medium"),
        ("The Singles' Day promotion rules are impossible to understand.", "negative", "medium"),
        ("{price} yuan for a {pe} is way too expensive.", "negative", "low"),
    ],
    "app_website": [
        ("The app crashes every time I open my orders.", "negative", "medium"),
        ("I was charged twice for one order!", "negative", "high"),
        ("Never receive the verification code, cannot log in.", "negative", "high"),
        ("Too many push notifications, please stop.", "negative", "low"),
        ("Checkout keeps spinning and I can't pay.", "negative", "high"),
    ],
    "suggestion": [
        ("Would love the {pe} in more colours.", "neutral", "low"),
        ("Please add an option to choose a delivery time slot.", "neutral", "low"),
        ("It would be great if the app let me filter orders by date.", "neutral", "low"),
        ("Please sell the {parte} of the {pe} separately.", "neutral", "low"),
    ],
    "praise": [
        ("Love my new {pe}, great quality and fast delivery!", "positive", "low"),
        ("Support solved my issue in five minutes. Thank you!", "positive", "low"),
        ("Third time buying the {pe}, still excellent.", "positive", "low"),
        ("Beautiful packaging, it made a perfect gift.", "positive", "low"),
    ],
    "other": [
        ("When will the {pe} be back in stock?", "neutral", "low"),
        ("Do you ship to Singapore?", "neutral", "low"),
        ("How do I get a VAT invoice for order {o}?", "neutral", "low"),
        ("Is the {pe} covered by an international warranty?", "neutral", "low"),
    ],
}
SPIKE_ZH: list[T] = [
    ("{p}的杯盖漏水，装了热水一倒过来就往外渗", "negative", "medium"),
    ("{p}保温效果很差，早上装的开水中午就凉了", "negative", "medium"),
    ("新买的{p}杯盖密封圈是歪的，拧紧了还是漏", "negative", "medium"),
    ("{p}放包里全漏了，电脑都湿了，太坑了", "negative", "high"),
    ("{p}才用三天就不保温了，这批货是不是有问题", "negative", "medium"),
    ("{p}杯身有股塑料味，倒出来的水都有味道", "negative", "medium"),
    ("{p}的温度显示屏不亮了，充电也没反应", "negative", "medium"),
]
SPIKE_EN: list[T] = [
    ("The lid of my {pe} leaks every time I tip it over.", "negative", "medium"),
    ("The {pe} doesn't keep anything warm, coffee is cold in two hours.", "negative", "medium"),
]
PROMO_SPIKE_ZH: list[T] = [
    ("双十一刚买的{p}，今天又降了{a}元，申请保价被拒", "negative", "medium"),
    ("双11的跨店满减券结算时用不了，白熬夜了", "negative", "medium"),
    ("双十一定金付了，尾款的价格比平时还贵，这是什么套路", "negative", "medium"),
    ("11.11的红包说是通用的，结果买{p}就不能用", "negative", "medium"),
]
PREFIX_ZH = ["", "", "", "亲，", "你好，", "客服你好，", "说实话，", "我想反映一下，"]
SUFFIX_ZH = ["", "", "", "。", "！", "，希望尽快处理。", "，太失望了。", "，请给个说法。", "😡", "，麻烦看一下"]
SUFFIX_NEUTRAL = ["", "", "。", "~", "，谢谢"]
SUFFIX_PRAISE = ["", "", "！", "👍", "，好评！", "。"]
SUFFIX_EN = ["", "", " Please help.", " Very disappointed.", " Thanks.", ""]
MIXED_TAILS = [" really disappointed", " so annoying", " not OK", " please fix it asap"]

# Resolution actions and replies per category: (action_zh, reply_zh, action_en, reply_en, compensation)
RESOLUTIONS: dict[str, list[tuple[str, str, str, str, str | None]]] = {
    "logistics": [
        (
            "联系{c}核实包裹位置并加急派送",
            "{name}您好，非常抱歉让您久等了。我们已联系{c}核实您的包裹，并要求加急派送，预计1-2天内送达，有进展会第一时间通知您。",
            "Asked {c} to trace the parcel and expedite delivery",
            "Hi {name}, sorry for the wait. We have asked {c} to trace your parcel and expedite it; we will update you as soon as we hear back.",
            None,
        ),
        (
            "确认包裹丢失，安排补发",
            "{name}您好，经与{c}核实，您的包裹在运输途中丢失，我们已为您安排补发，补发单号会短信通知您，给您带来不便非常抱歉。",
            "Confirmed lost parcel and sent a replacement",
            "Hi {name}, {c} confirmed the parcel was lost. We have shipped a replacement and will text you the new tracking number. Sorry for the trouble.",
            None,
        ),
        (
            "发放5元无门槛优惠券作为延误补偿",
            "{name}您好，物流延误给您添麻烦了，我们已向您的账户发放一张5元无门槛优惠券以表歉意，包裹目前已在派送中。",
            "Issued a 5 yuan voucher for the delay",
            "Hi {name}, sorry about the delay. We have added a 5 yuan voucher to your account; the parcel is now out for delivery.",
            "5元无门槛优惠券",
        ),
        (
            "签收未收到：提交快递调查，全额退款",
            "{name}您好，针对“显示签收但未收到”的情况，我们已向{c}提交调查，并先行为您办理全额退款，款项将在1-3个工作日原路退回。",
            "Marked delivered but missing: opened a carrier investigation and refunded in full",
            "Hi {name}, since the parcel shows delivered but never reached you, we opened an investigation with {c} and refunded you in full; it will reach your original payment method in 1-3 business days.",
            "全额退款",
        ),
    ],
    "product_quality": [
        (
            "退货退款，运费由商家承担",
            "{name}您好，非常抱歉{p}出现质量问题。我们已为您开通退货退款，退货运费由我们承担，收到退货后1-3个工作日内退款。",
            "Return and refund, return shipping paid by us",
            "Hi {name}, sorry the {pe} was faulty. We have opened a return and refund for you, with return shipping on us; the refund follows 1-3 business days after we receive it.",
            "全额退款",
        ),
        (
            "免费换新",
            "{name}您好，给您带来不好的体验非常抱歉。我们为您安排{p}免费换新，新品会在48小时内发出，旧件请在收到新品后寄回。",
            "Free replacement",
            "Hi {name}, sorry about this. We will send you a new {pe} within 48 hours; please return the old one after the new one arrives.",
            None,
        ),
        (
            "部分退款20元作为补偿",
            "{name}您好，关于{p}的{part}问题，我们向您致歉，已为您办理20元部分退款作为补偿，如后续使用仍有问题可随时联系我们。",
            "Partial refund of 20 yuan",
            "Hi {name}, we apologise for the issue with the {parte}. We have refunded 20 yuan as compensation; contact us anytime if the problem continues.",
            "部分退款20元",
        ),
        (
            "安全问题升级至质量部门，全额退款并回收产品",
            "{name}您好，您反映的安全问题我们非常重视，已升级至质量部门调查，先为您办理全额退款并安排上门回收{p}，请暂停使用。",
            "Escalated safety issue to the quality team, refunded in full and collected the product",
            "Hi {name}, we take this safety issue very seriously. It has been escalated to our quality team, we have refunded you in full and will collect the {pe}; please stop using it.",
            "全额退款",
        ),
    ],
    "packaging": [
        (
            "补发受损配件",
            "{name}您好，很抱歉包装没有保护好商品，我们已为您补发受损的部分，并已反馈仓库改进包装。",
            "Re-sent the damaged part",
            "Hi {name}, sorry the packaging let you down. We have re-sent the damaged part and asked the warehouse to improve the packing.",
            None,
        ),
        (
            "退货退款",
            "{name}您好，商品因包装破损受损，我们为您办理退货退款，退货运费由我们承担。",
            "Return and refund",
            "Hi {name}, since the item was damaged in transit we have opened a return and refund, shipping on us.",
            "全额退款",
        ),
        (
            "反馈仓库改进包装，发放3元优惠券",
            "{name}您好，感谢您的反馈，我们已将包装问题反馈给仓库，并为您发放一张3元优惠券。",
            "Reported packaging to the warehouse and issued a 3 yuan voucher",
            "Hi {name}, thanks for telling us. We passed this to the warehouse and added a 3 yuan voucher to your account.",
            "3元优惠券",
        ),
    ],
    "customer_service": [
        (
            "主管回电致歉并跟进原问题",
            "{name}您好，对于之前客服处理不及时向您郑重道歉，已由客服主管专人跟进您的问题，今天内会给您回电。",
            "Supervisor called back, apologised and took over the case",
            "Hi {name}, we apologise for the slow handling. A supervisor has taken over your case personally and will call you today.",
            None,
        ),
        (
            "升级至专属客服处理",
            "{name}您好，您的问题已升级至专属客服，后续将由同一位同事全程跟进，不需要您重复描述。",
            "Escalated to a dedicated agent",
            "Hi {name}, your case is now with a dedicated agent who will follow it through, so you will not need to repeat yourself.",
            None,
        ),
    ],
    "after_sales": [
        (
            "加急处理退款",
            "{name}您好，您的退款已加急处理，目前已经提交至支付渠道，一般1-3个工作日到账，请留意账户变动。",
            "Expedited the refund",
            "Hi {name}, we have expedited your refund; it has been submitted to the payment provider and usually arrives in 1-3 business days.",
            "全额退款",
        ),
        (
            "退还退货运费",
            "{name}您好，因我们的原因产生的退货运费由我们承担，已为您退还运费{a}元。",
            "Refunded the return shipping fee",
            "Hi {name}, as the return was our fault we have refunded the return shipping fee of {a} yuan.",
            "退还运费",
        ),
        (
            "审核通过换货申请",
            "{name}您好，您的换货申请已审核通过，新的{p}将在收到退回商品后24小时内发出。",
            "Approved the exchange",
            "Hi {name}, your exchange is approved; the new {pe} ships within 24 hours of receiving the return.",
            None,
        ),
    ],
    "price_promotion": [
        (
            "补偿差价",
            "{name}您好，{p}在价保期内降价，我们已为您补偿差价{a}元，将退回原支付账户。",
            "Refunded the price difference",
            "Hi {name}, the {pe} dropped in price within the protection period, so we have refunded the {a} yuan difference.",
            "补差价",
        ),
        (
            "解释活动规则，发放同等面额优惠券",
            "{name}您好，该优惠券不适用于此商品，给您带来困扰很抱歉，我们已为您补发一张同等面额的通用券。",
            "Explained the promotion rules and issued an equivalent voucher",
            "Hi {name}, that coupon does not cover this item. Sorry for the confusion; we have issued you an equivalent general voucher.",
            "同等面额优惠券",
        ),
        (
            "解释活动规则",
            "{name}您好，活动价不在保价范围内，具体规则请见活动页说明，给您带来不便敬请谅解。",
            "Explained that promotion prices are excluded from price protection",
            "Hi {name}, promotional prices are not covered by price protection, as the event page explains. Sorry for the inconvenience.",
            None,
        ),
    ],
    "app_website": [
        (
            "核实重复扣款并退回",
            "{name}您好，经核实您的账户确实被重复扣款，多扣的款项已原路退回，1-3个工作日到账。",
            "Verified the double charge and refunded the duplicate",
            "Hi {name}, we confirmed the duplicate charge and refunded it to your original payment method; allow 1-3 business days.",
            "退回重复扣款",
        ),
        (
            "提交技术团队修复，告知临时解决办法",
            "{name}您好，问题已提交技术团队修复，您可以先尝试清除缓存或使用网页版下单。",
            "Filed a bug with the tech team and shared a workaround",
            "Hi {name}, we have filed this with our engineers; meanwhile please clear the app cache or use the website.",
            None,
        ),
        (
            "关闭自动续费并退还本期会员费",
            "{name}您好，已为您关闭会员自动续费，并退还本期会员费用。",
            "Turned off auto-renewal and refunded this period",
            "Hi {name}, we have turned off auto-renewal and refunded the current membership period.",
            "退还会员费",
        ),
    ],
}


def fill_template(template: str, rng: random.Random, product: Product, carrier: str, order_id: str) -> str:
    return template.format(
        p=product.name,
        pe=product.en,
        part=product.part,
        parte=product.part_en,
        c=carrier,
        d=rng.randint(3, 9),
        n=rng.randint(3, 6),
        a=rng.choice([10, 15, 20, 30, 50]),
        o=order_id,
        price=product.price,
    )


def _decorate(text: str, lang: str, category: str, sentiment: str, rng: random.Random) -> str:
    if lang == "en":
        return text + (rng.choice(SUFFIX_EN) if sentiment == "negative" else "")
    body = text
    if category != "praise":
        body = rng.choice(PREFIX_ZH) + body
    tail = rng.choice({"positive": SUFFIX_PRAISE, "neutral": SUFFIX_NEUTRAL}.get(sentiment, SUFFIX_ZH))
    if sentiment == "negative" and lang == "mixed":
        tail = "，" + rng.choice(MIXED_TAILS)
    if body.endswith(("！", "？", "。", "!", "?")) and tail.startswith(("，", "。", "！")):
        tail = tail[1:] if len(tail) > 1 else ""
    return body + tail


BASE_WEIGHTS = {
    "logistics": 0.21,
    "product_quality": 0.16,
    "packaging": 0.08,
    "customer_service": 0.09,
    "after_sales": 0.12,
    "price_promotion": 0.07,
    "app_website": 0.07,
    "suggestion": 0.06,
    "praise": 0.11,
    "other": 0.03,
}
NEEDS_ORDER = {"logistics", "product_quality", "packaging", "after_sales", "price_promotion", "praise"}


def generate(
    per_week: int = 160, weeks: int = WEEKS, seed: int = 20261123, start: datetime = FIRST_MONDAY
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Generate feedback and resolution rows (dicts of CSV columns), deterministically."""
    rng = random.Random(seed)
    feedback: list[dict[str, Any]] = []
    resolutions: list[dict[str, Any]] = []
    cats = list(BASE_WEIGHTS)
    weights = [BASE_WEIGHTS[c] for c in cats]
    last_week = weeks - 1
    for week in range(weeks):
        monday = start + timedelta(weeks=week)
        n = int(per_week * rng.uniform(0.92, 1.08))
        plan: list[tuple[str, str | None]] = [(rng.choices(cats, weights)[0], None) for _ in range(n)]
        if week == last_week:  # planted trend 1: product spike
            plan += [("product_quality", "spike")] * int(per_week * 0.24)
        if week == last_week - 1:  # planted trend 3: 11.11 promotion aftermath
            plan += [("price_promotion", "promo")] * int(per_week * 0.13)
        for category, special in plan:
            feedback.append(_one(rng, category, special, monday, len(feedback) + 1, resolutions))
    return feedback, resolutions


def _one(
    rng: random.Random,
    category: str,
    special: str | None,
    monday: datetime,
    seq: int,
    resolutions: list[dict[str, Any]],
) -> dict[str, Any]:
    created = monday + timedelta(
        days=rng.randrange(7), hours=rng.randint(8, 22), minutes=rng.randrange(60), seconds=rng.randrange(60)
    )
    roll = rng.random()
    lang = "en" if roll < 0.18 else ("mixed" if roll < 0.22 else "zh")
    product = rng.choice(PRODUCTS)
    if special == "spike":
        product = PRODUCTS[0]
        pool = SPIKE_EN if lang == "en" else SPIKE_ZH
    elif special == "promo":
        lang = "zh" if lang == "mixed" else lang
        pool = PROMO_SPIKE_ZH if lang != "en" else EN["price_promotion"]
    else:
        pool = EN[category] if lang == "en" else ZH[category]
    if category == "logistics":  # planted trend 2: one carrier behind most logistics complaints
        carrier = BAD_CARRIER if rng.random() < 0.75 else rng.choice(CARRIERS[1:])
    else:
        carrier = rng.choices(CARRIERS, [0.19, 0.27, 0.27, 0.27])[0]
    order_id = f"{created:%y%m%d}{rng.randrange(10**9, 10**10)}"
    template, sentiment, urgency = rng.choice(pool)
    if lang == "mixed" and sentiment != "negative":
        lang = "zh"
    text = _decorate(fill_template(template, rng, product, carrier, order_id), lang, category, sentiment, rng)
    channel = rng.choice(CHANNELS)
    has_order = category in NEEDS_ORDER or rng.random() < 0.3
    row: dict[str, Any] = {
        "id": f"FB{created:%y%m%d}-{seq:05d}",
        "text": text,
        "created_at": created.strftime("%Y-%m-%d %H:%M:%S"),
        "channel": channel,
        "customer_tier": rng.choice(TIERS),
        "order_id": order_id if has_order else "",
        "product": product.name if has_order or "{p" in template else "",
        "sku": product.sku if has_order else "",
        "carrier": carrier if has_order else "",
        "region": rng.choice(REGIONS),
        "rating": "",
        "category": category,
        "sentiment": sentiment,
        "urgency": urgency,
    }
    if channel in REVIEW_CHANNELS:
        row["rating"] = str({"positive": 5, "neutral": rng.choice([3, 4])}.get(sentiment, rng.choice([1, 1, 2])))
    options = RESOLUTIONS.get(category)
    wants = rng.random() < (0.8 if urgency in ("critical", "high") else 0.5)
    if options and sentiment != "positive" and wants and created < SAMPLE_AS_OF - timedelta(days=4):
        resolutions.append(_resolution(rng, row, options, product, carrier, lang, created, urgency))
    return row


def _resolution(
    rng: random.Random,
    row: dict[str, Any],
    options: list[Any],
    product: Product,
    carrier: str,
    lang: str,
    created: datetime,
    urgency: str,
) -> dict[str, Any]:
    action_zh, reply_zh, action_en, reply_en, compensation = rng.choice(options)
    name = "there" if lang == "en" else rng.choice(NAMES) + "先生" if rng.random() < 0.5 else rng.choice(NAMES) + "女士"
    slots = {
        "p": product.name,
        "pe": product.en,
        "part": product.part,
        "parte": product.part_en,
        "c": carrier,
        "name": name,
        "a": rng.choice([10, 15, 20, 30]),
    }
    english = lang == "en"
    resolved = created + timedelta(hours=rng.randint(2, 96))
    outcome = (
        "escalated"
        if urgency == "critical" and rng.random() < 0.5
        else ("resolved" if rng.random() < 0.88 else "unresolved")
    )
    return {
        "id": "RS" + row["id"][2:],
        "feedback_id": row["id"],
        "action": (action_en if english else action_zh).format(**slots),
        "reply": (reply_en if english else reply_zh).format(**slots),
        "outcome": outcome,
        "compensation": (compensation or "")
        if not english or not compensation
        else _EN_COMP.get(compensation, compensation),
        "resolved_at": resolved.strftime("%Y-%m-%d %H:%M:%S"),
    }


_EN_COMP = {
    "5元无门槛优惠券": "5 yuan voucher",
    "全额退款": "full refund",
    "部分退款20元": "partial refund 20 yuan",
    "3元优惠券": "3 yuan voucher",
    "退还运费": "return shipping refunded",
    "补差价": "price difference refunded",
    "同等面额优惠券": "equivalent voucher",
    "退回重复扣款": "duplicate charge refunded",
    "退还会员费": "membership fee refunded",
}


def write_csv(path: Path, rows: list[dict[str, Any]], columns: list[str]) -> None:
    """Write rows as UTF-8 CSV with a header."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def facts(feedback: list[dict[str, Any]]) -> dict[str, Any]:
    """The planted trends as counts computed from the rows (documented in the README)."""

    def week_of(row: dict[str, Any]) -> str:
        y, w, _ = datetime.strptime(row["created_at"], "%Y-%m-%d %H:%M:%S").isocalendar()
        return f"{y}-W{w:02d}"

    neg = [r for r in feedback if r["sentiment"] == "negative"]
    by_week = Counter((week_of(r), r["category"]) for r in neg)
    logistics = [r for r in neg if r["category"] == "logistics" and r["carrier"]]
    carrier_counts = Counter(r["carrier"] for r in logistics)
    w47_pq = [r for r in neg if r["category"] == "product_quality" and week_of(r) == "2026-W47"]
    shipments = Counter(r["carrier"] for r in feedback if r["carrier"])
    return {
        "feedback": len(feedback),
        "negative_by_week_category": {f"{w} {c}": n for (w, c), n in sorted(by_week.items())},
        "w47_product_quality": len(w47_pq),
        "w46_product_quality": by_week[("2026-W46", "product_quality")],
        "w47_product_quality_top_product": Counter(r["product"] for r in w47_pq).most_common(1)[0],
        "logistics_complaints_with_carrier": len(logistics),
        "logistics_by_carrier": dict(carrier_counts.most_common()),
        "bad_carrier_share_of_shipments": round(shipments[BAD_CARRIER] / sum(shipments.values()), 3),
        "w46_price_promotion": by_week[("2026-W46", "price_promotion")],
        "w45_price_promotion": by_week[("2026-W45", "price_promotion")],
    }


def main() -> None:
    """Regenerate the committed sample files."""
    feedback, resolutions = generate()
    write_csv(SAMPLE_DIR / "feedback.csv", feedback, FEEDBACK_COLUMNS)
    write_csv(SAMPLE_DIR / "resolutions.csv", resolutions, RESOLUTION_COLUMNS)
    import json

    print(json.dumps(facts(feedback), ensure_ascii=False, indent=1))


if __name__ == "__main__":
    main()
