"""Chinese names with their pinyin for the demo: people, towns and villages.

Everything here is drawn from a `random.Random` the caller passes in, so a seed fixes every
name. Pinyin is written without tone marks, syllables joined as in passports ("Li Xiaoming"),
with an apostrophe where a syllable starting with a, e or o would run into the one before
("Xi'an").
"""

from __future__ import annotations

import random
from typing import Final


def _words(text: str) -> list[str]:
    return text.split()


def _pairs(text: str) -> tuple[tuple[str, str], ...]:
    """Parse "伟:wei 强:qiang" into (("伟", "wei"), ("强", "qiang"))."""
    return tuple((zh, py) for zh, py in (item.split(":") for item in _words(text)))


# (character, pinyin, relative frequency): the common surnames, roughly by population share.
SURNAMES: Final[tuple[tuple[str, str, int], ...]] = tuple(
    (zh, py, int(weight))
    for zh, py, weight in (
        item.split(":")
        for item in _words(
            "王:Wang:72 李:Li:70 张:Zhang:66 刘:Liu:53 陈:Chen:45 杨:Yang:32 "
            "黄:Huang:24 赵:Zhao:21 吴:Wu:20 周:Zhou:19 徐:Xu:15 孙:Sun:15 "
            "马:Ma:14 朱:Zhu:13 胡:Hu:12 郭:Guo:11 何:He:11 林:Lin:10 罗:Luo:10 "
            "高:Gao:10 郑:Zheng:9 梁:Liang:9 谢:Xie:8 宋:Song:7 唐:Tang:7 许:Xu:6 "
            "韩:Han:6 冯:Feng:6 邓:Deng:6 曹:Cao:6 彭:Peng:5 曾:Zeng:5 肖:Xiao:5 "
            "田:Tian:5 董:Dong:5 潘:Pan:4 袁:Yuan:4 蔡:Cai:4 蒋:Jiang:4 余:Yu:4 "
            "叶:Ye:4 程:Cheng:4 魏:Wei:3 苏:Su:3 吕:Lyu:3 丁:Ding:3 沈:Shen:3 "
            "姚:Yao:3 钟:Zhong:3 汪:Wang:3 金:Jin:2 方:Fang:2 邵:Shao:2 毛:Mao:2 "
            "应:Ying:2 楼:Lou:2 傅:Fu:2 戴:Dai:2 钱:Qian:2 严:Yan:2"
        )
    )
)

# Given-name characters that lean male, lean female, or are common to both.
GIVEN_MALE: Final[tuple[tuple[str, str], ...]] = _pairs(
    "伟:wei 强:qiang 磊:lei 军:jun 勇:yong 杰:jie 涛:tao 斌:bin 超:chao 刚:gang 辉:hui 鹏:peng "
    "飞:fei 鑫:xin 波:bo 浩:hao 凯:kai 健:jian 俊:jun 建:jian 国:guo 志:zhi 海:hai 峰:feng 龙:long "
    "东:dong 亮:liang 成:cheng 博:bo 宏:hong"
)
GIVEN_FEMALE: Final[tuple[tuple[str, str], ...]] = _pairs(
    "芳:fang 娜:na 敏:min 静:jing 丽:li 艳:yan 娟:juan 霞:xia 燕:yan 玲:ling 婷:ting 雪:xue 慧:hui "
    "莹:ying 琳:lin 颖:ying 倩:qian 洁:jie 红:hong 梅:mei 萍:ping 璐:lu 晶:jing 琴:qin 兰:lan "
    "悦:yue 蕾:lei 薇:wei 雯:wen 丹:dan"
)
GIVEN_ANY: Final[tuple[tuple[str, str], ...]] = _pairs(
    "明:ming 华:hua 平:ping 文:wen 晓:xiao 小:xiao 宇:yu 佳:jia 欣:xin 嘉:jia 思:si 雨:yu 晨:chen "
    "春:chun 安:an 一:yi 子:zi 林:lin 云:yun 永:yong"
)

# Towns of the county: (Chinese name without 镇/乡, pinyin, 镇 town or 乡 township).
TOWNS: Final[tuple[tuple[str, str, str], ...]] = (
    ("石峡", "Shixia", "镇"),
    ("白沙", "Baisha", "镇"),
    ("桃源", "Taoyuan", "乡"),
    ("龙潭", "Longtan", "镇"),
    ("清溪", "Qingxi", "镇"),
    ("柳河", "Liuhe", "乡"),
    ("松岭", "Songling", "乡"),
    ("梅岭", "Meiling", "镇"),
    ("双溪", "Shuangxi", "镇"),
    ("东坪", "Dongping", "乡"),
    ("花桥", "Huaqiao", "镇"),
    ("金竹", "Jinzhu", "乡"),
    ("马坞", "Mawu", "乡"),
    ("高桥", "Gaoqiao", "镇"),
    ("凤山", "Fengshan", "乡"),
    ("古塘", "Gutang", "镇"),
)

_VILLAGE_HEADS: Final[tuple[tuple[str, str], ...]] = _pairs(
    "上:shang 下:xia 东:dong 西:xi 南:nan 北:bei 大:da 小:xiao 新:xin 后:hou 前:qian 石:shi "
    "杨:yang 黄:huang 桃:tao 竹:zhu 枫:feng 柳:liu 松:song 溪:xi"
)
_VILLAGE_TAILS: Final[tuple[tuple[str, str], ...]] = _pairs(
    "坪:ping 坑:keng 岭:ling 湾:wan 桥:qiao 庄:zhuang 口:kou 塘:tang 坞:wu 源:yuan 畈:fan 头:tou "
    "岙:ao 埠:bu 垟:yang"
)

STREETS: Final[tuple[tuple[str, str], ...]] = (
    ("人民路", "Renmin Road"),
    ("解放路", "Jiefang Road"),
    ("中山路", "Zhongshan Road"),
    ("健康路", "Jiankang Road"),
    ("兴华路", "Xinghua Road"),
    ("新街", "Xin Street"),
    ("府前街", "Fuqian Street"),
    ("文化路", "Wenhua Road"),
)


def join_pinyin(syllables: list[str]) -> str:
    """Join syllables into one word, capitalised, with apostrophes before a, e and o."""
    out = ""
    for s in syllables:
        s = s.lower()
        if out and s[0] in "aeo":
            out += "'"
        out += s
    return out[:1].upper() + out[1:]


def person(rng: random.Random, *, female: bool, surname: str | None = None) -> tuple[str, str]:
    """A (Chinese, pinyin) full name; `surname` (a character) fixes the family name."""
    if surname is None:
        zh_s, py_s, _ = rng.choices(SURNAMES, weights=[w for *_, w in SURNAMES])[0]
    else:
        zh_s, py_s = next((z, p) for z, p, _ in SURNAMES if z == surname)
    pool = (GIVEN_FEMALE if female else GIVEN_MALE) + GIVEN_ANY
    n = 1 if rng.random() < 0.35 else 2
    picks = [rng.choice(pool) for _ in range(n)]
    if n == 2 and picks[0][0] == picks[1][0] and rng.random() < 0.7:
        picks[1] = rng.choice(GIVEN_FEMALE if female else GIVEN_MALE)
    zh = zh_s + "".join(c for c, _ in picks)
    en = f"{py_s} {join_pinyin([p for _, p in picks])}"
    return zh, en


def village(rng: random.Random, taken: set[str]) -> tuple[str, str]:
    """A (Chinese, pinyin) village name not in `taken` (compared by pinyin); adds it to `taken`."""
    while True:
        head = rng.choice(_VILLAGE_HEADS)
        tail = rng.choice(_VILLAGE_TAILS)
        if head[0] == tail[0]:
            continue
        py = join_pinyin([head[1], tail[1]])
        if py.lower() in taken:
            continue
        taken.add(py.lower())
        return head[0] + tail[0], py
