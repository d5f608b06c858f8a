"""Writes the demo's Chinese review texts to examples/texts/ in the encodings real files come in.

Deterministic: run it again and the same bytes come out. Most files are UTF-8; some are
GB18030 (as Windows tools in China save them) and one is UTF-16 with a byte-order mark, so
the demo shows sentiment-zh detecting encodings rather than assuming UTF-8.
"""

from __future__ import annotations

from pathlib import Path

# (file stem, encoding, text): the stem says what a reader would call the review.
REVIEWS: list[tuple[str, str, str]] = [
    ("hotel-positive", "utf-8",
     "酒店位置很好，离地铁站只有五分钟。房间干净整洁，前台服务热情，早餐种类也多，下次出差还住这里。"),
    ("hotel-negative", "gb18030",
     "房间又小又暗，空调噪音很大，一晚上没睡好。卫生间有股怪味，前台态度冷淡，不会再来了。"),
    ("laptop-positive", "utf-8",
     "电脑收到了，做工精致，屏幕很清晰，运行速度快，电池也耐用。物流很快，非常满意！"),
    ("laptop-negative", "gb18030",
     "用了不到一个星期就经常死机，键盘还有两个键不灵。联系客服一直推来推去，太失望了。"),
    ("book-positive", "utf-16",
     "这本书写得真好，语言朴实却很有力量，读完很受启发，推荐给身边的朋友。"),
    ("book-negative", "utf-8",
     "内容空洞，翻来覆去就那几句话，印刷质量也差，好多错别字，浪费钱。"),
    ("phone-positive", "gb18030",
     "手机外观漂亮，拍照效果出乎意料地好，系统流畅，性价比很高，值得购买。"),
    ("phone-negative", "utf-8",
     "充电特别慢，电池半天就没电了，发热严重，退货又麻烦，很后悔买了它。"),
    ("restaurant-positive", "utf-8",
     "菜的味道很地道，分量足，服务员很周到，环境也舒服，一家人吃得很开心。"),
    ("restaurant-negative", "gb18030",
     "等了一个小时才上菜，菜是凉的，价格还贵，服务员爱答不理，体验很差。"),
    ("delivery-positive", "utf-8", "包装完好，第二天就到了，东西和描述一样，好评！"),
    ("delivery-negative", "utf-8", "发错货了，还少了一件，客服不回消息，差评。"),
]


def write_texts(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for stem, encoding, text in REVIEWS:
        path = folder / f"{stem}.txt"
        # "utf-16" writes a byte-order mark (little-endian), like Windows Notepad's "Unicode".
        path.write_bytes((text + "\n").encode(encoding))
        written.append(path)
    return written


if __name__ == "__main__":
    for written_path in write_texts(Path(__file__).resolve().parent / "texts"):
        print(written_path.name)
