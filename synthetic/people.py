"""Invented people: names, sex, birth dates, resident IDs, phones and addresses (no real data)."""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from datetime import date, timedelta

from synthetic.resident_id import make_resident_id

SURNAMES = (
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何林高罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程"
    "苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦方白邹孟熊秦邱江尹薛段雷侯龙史陶黎贺顾毛郝龚邵"
)
# Given-name characters, each with a same-sounding character a clerk may type instead.
HOMOPHONES: dict[str, str] = {
    "伟": "炜",
    "芳": "方",
    "娜": "纳",
    "敏": "闽",
    "静": "婧",
    "丽": "莉",
    "磊": "垒",
    "军": "君",
    "洋": "阳",
    "勇": "永",
    "艳": "燕",
    "杰": "洁",
    "娟": "鹃",
    "涛": "韬",
    "明": "铭",
    "超": "潮",
    "秀": "绣",
    "霞": "侠",
    "平": "萍",
    "刚": "钢",
    "桂": "贵",
    "英": "瑛",
    "华": "桦",
    "建": "健",
    "国": "帼",
    "志": "智",
    "红": "宏",
    "玲": "铃",
    "文": "雯",
    "辉": "晖",
    "鹏": "朋",
    "斌": "彬",
    "宇": "雨",
    "浩": "昊",
    "凯": "楷",
    "林": "琳",
    "云": "芸",
    "春": "纯",
    "梅": "玫",
    "兰": "岚",
    "凤": "风",
    "琴": "勤",
    "雪": "学",
    "荣": "蓉",
    "晶": "京",
    "亮": "谅",
    "成": "诚",
    "峰": "锋",
    "波": "博",
    "立": "力",
    "新": "欣",
    "玉": "钰",
    "东": "冬",
    "德": "得",
}
GIVEN_CHARS = tuple(HOMOPHONES)
# (area code prefix of the resident ID, city part of the address); area codes are public
# administrative division codes, the rest of every address is invented.
REGIONS = (
    ("330106", "浙江省杭州市西湖区"),
    ("320102", "江苏省南京市玄武区"),
    ("310104", "上海市徐汇区"),
    ("370102", "山东省济南市历下区"),
    ("440106", "广东省广州市天河区"),
    ("110105", "北京市朝阳区"),
    ("210102", "辽宁省沈阳市和平区"),
    ("130102", "河北省石家庄市长安区"),
    ("420106", "湖北省武汉市武昌区"),
    ("510107", "四川省成都市武侯区"),
)
STREETS = (
    "和平路",
    "解放路",
    "人民路",
    "建设路",
    "幸福街",
    "长江路",
    "中山路",
    "文化路",
    "光明路",
    "胜利路",
    "青年路",
    "新华路",
    "朝阳街",
    "团结路",
    "振兴路",
    "友谊路",
)
PHONE_PREFIXES = ("13", "14", "15", "16", "17", "18", "19")
BIRTH_FIRST = date(1935, 1, 1)
BIRTH_SPAN_DAYS = (date(1985, 12, 31) - BIRTH_FIRST).days


@dataclass(frozen=True)
class Person:
    name: str
    male: bool
    birth_date: date
    resident_id: str
    phone: str
    address: str


def make_person(rng: random.Random) -> Person:
    """An invented person born 1935-1985 with a valid resident ID matching birth date and sex."""
    male = rng.random() < 0.62  # both cancers are more common in men
    birth = BIRTH_FIRST + timedelta(days=rng.randrange(BIRTH_SPAN_DAYS + 1))
    given = "".join(rng.choice(GIVEN_CHARS) for _ in range(rng.choice((1, 2, 2, 2))))
    area, city = rng.choice(REGIONS)
    return Person(
        name=rng.choice(SURNAMES) + given,
        male=male,
        birth_date=birth,
        resident_id=make_resident_id(rng, area, birth, male),
        phone=make_phone(rng),
        address=make_address(rng, city),
    )


def make_phone(rng: random.Random) -> str:
    """An 11-digit mobile-style number 1[3-9]x xxxx xxxx; randomly invented."""
    return rng.choice(PHONE_PREFIXES) + "".join(rng.choice("0123456789") for _ in range(9))


def make_address(rng: random.Random, city: str) -> str:
    """City prefix plus an invented street, house, building and flat number."""
    return (
        f"{city}{rng.choice(STREETS)}{rng.randint(1, 399)}号"
        f"{rng.randint(1, 30)}栋{rng.randint(1, 28)}{rng.randint(1, 4):02d}室"
    )


def misspell_name(person: Person, rng: random.Random) -> Person:
    """The same person with one given-name character replaced by a homophone (a typing slip)."""
    positions = list(range(1, len(person.name)))
    pos = rng.choice(positions)
    name = person.name[:pos] + HOMOPHONES[person.name[pos]] + person.name[pos + 1 :]
    return replace(person, name=name)
