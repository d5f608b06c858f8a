"""Synthetic assets for the demo, tests and evaluation: images of Chinese text rendered with a CJK font."""

from __future__ import annotations

import random
import subprocess
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter, ImageFont

# Phrases written for the project: signs, notices and shop fronts one meets in the street.
PHRASES = [
    "出口在左边",
    "禁止吸烟",
    "欢迎光临",
    "小心地滑",
    "营业时间八点至二十二点",
    "请勿停车",
    "地铁站入口",
    "北京路一百二十号",
    "新鲜水果每斤五元",
    "安全出口",
    "非工作人员禁止入内",
    "请排队等候",
    "洗手间在二楼",
    "今日特价牛肉面",
    "火车站",
    "前方施工请绕行",
    "图书馆",
    "人民医院急诊部",
    "停车场已满",
    "请保持安静",
    "免费无线网络",
    "电梯维修中",
    "中国银行",
    "上海市第一中学",
    "春节快乐万事如意",
    "注意安全",
    "外卖窗口",
    "书店二楼开放",
    "咖啡馆",
    "限速六十公里",
    "公交车站",
    "热烈欢迎新同学",
    "谢谢惠顾",
    "会议室三零二",
    "请随手关门",
    "药店二十四小时营业",
    "长江大桥",
    "减速慢行",
    "自行车道",
    "邮局",
    "旅客服务中心",
    "请出示健康码",
    "北京欢迎你",
    "小吃街由此进",
    "儿童游乐区",
    "景区售票处",
    "早餐包子豆浆",
    "电影院四号厅",
    "超市打折",
    "紧急疏散路线",
    "温馨提示请带好随身物品",
    "东门停车场",
    "禁止攀爬",
    "饮水机",
    "失物招领",
    "西湖风景区",
    "机场大巴",
    "充电站",
    "广州南站",
    "宠物禁止入内",
    "出租车上客点",
]

FONT_CANDIDATES = [
    ("wqy-microhei.ttc", 0),
    ("wqy-microhei.ttc", 1),
    ("wqy-zenhei.ttc", 0),
    ("NotoSansCJK-Regular.ttc", 2),
]
FONT_DIRS = [Path("/usr/share/fonts"), Path("/usr/local/share/fonts"), Path.home() / ".fonts"]


class FontMissingError(RuntimeError):
    pass


def cjk_fonts() -> list[tuple[Path, int]]:
    """Every CJK font face found on this machine (Debian: apt-get install fonts-wqy-microhei)."""
    found = []
    for name, index in FONT_CANDIDATES:
        for folder in FONT_DIRS:
            hits = sorted(folder.rglob(name)) if folder.is_dir() else []
            if hits:
                found.append((hits[0], index))
                break
    if not found:
        try:
            out = subprocess.run(
                ["fc-match", "-f", "%{file}", ":lang=zh"],
                capture_output=True,
                text=True,
                timeout=10,
                check=False,
            ).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            out = ""
        if out and Path(out).is_file():
            found.append((Path(out), 0))
    if not found:
        raise FontMissingError(
            "no CJK font found: install one, e.g. `apt-get install fonts-wqy-microhei`"
        )
    return found


@dataclass(frozen=True, slots=True)
class LineStyle:
    font: tuple[Path, int]
    size: int
    background: tuple[int, int, int]
    foreground: tuple[int, int, int]
    angle: float
    noise: float
    blur: float


def random_style(rng: random.Random, fonts: list[tuple[Path, int]]) -> LineStyle:
    def colour(low: int, high: int) -> tuple[int, int, int]:
        return (rng.randint(low, high), rng.randint(low, high), rng.randint(low, high))

    dark = rng.random() < 0.3
    bg, fg = (colour(10, 80), colour(200, 255)) if dark else (colour(170, 255), colour(0, 70))
    return LineStyle(
        font=rng.choice(fonts),
        size=rng.randint(22, 64),
        background=bg,
        foreground=fg,
        angle=rng.uniform(-4.0, 4.0),
        noise=rng.uniform(0.0, 18.0),
        blur=rng.choice([0.0, 0.0, 0.5, 0.8]),
    )


def render_line(text: str, style: LineStyle, seed: int = 0) -> Image.Image:
    """One line of text on a textured background, slightly rotated, with sensor-like noise."""
    font = ImageFont.truetype(str(style.font[0]), style.size, index=style.font[1])
    left, top, right, bottom = (int(v) for v in font.getbbox(text))
    pad_x, pad_y = style.size, style.size // 2 + 6
    width, height = right - left + 2 * pad_x, bottom - top + 2 * pad_y
    image = _background(width, height, style.background, seed)
    ImageDraw.Draw(image).text((pad_x - left, pad_y - top), text, font=font, fill=style.foreground)
    if style.angle:
        image = image.rotate(
            style.angle, resample=Image.Resampling.BICUBIC, expand=True, fillcolor=style.background
        )
    if style.blur:
        image = image.filter(ImageFilter.GaussianBlur(style.blur))
    return _add_noise(image, style.noise, seed)


def render_sign(
    lines: list[str], fonts: list[tuple[Path, int]], seed: int, size: tuple[int, int] = (1280, 720)
) -> tuple[Image.Image, list[str]]:
    """A photo-sized scene of lines placed top to bottom; returns it and the lines that fit."""
    rng = random.Random(seed)
    background = (rng.randint(90, 200), rng.randint(90, 200), rng.randint(90, 200))
    image = _background(size[0], size[1], background, seed)
    y = rng.randint(30, 80)
    placed: list[str] = []
    for i, text in enumerate(lines):
        style = random_style(rng, fonts)
        style = LineStyle(
            style.font,
            rng.randint(36, 72),
            style.background,
            style.foreground,
            rng.uniform(-2, 2),
            0.0,
            0.0,
        )
        line = render_line(text, style, seed * 31 + i)
        if line.width > size[0] - 40:
            line = line.resize((size[0] - 40, max(1, line.height * (size[0] - 40) // line.width)))
        x = rng.randint(20, max(20, size[0] - line.width - 20))
        if y + line.height > size[1] - 10:
            break
        image.paste(line, (x, y))
        placed.append(text)
        y += line.height + rng.randint(20, 60)
    return _add_noise(image, 6.0, seed), placed


def _background(width: int, height: int, colour: tuple[int, int, int], seed: int) -> Image.Image:
    import numpy as np

    rng = np.random.default_rng(seed)
    base = np.empty((height, width, 3), dtype=np.float32)
    base[:] = colour
    gradient = np.linspace(-12, 12, width, dtype=np.float32)[None, :, None]
    texture = rng.normal(0, 6, size=(max(1, height // 8), max(1, width // 8), 1)).astype(np.float32)
    texture = np.kron(texture, np.ones((8, 8, 1), dtype=np.float32))[:height, :width]
    pad_h, pad_w = height - texture.shape[0], width - texture.shape[1]
    if pad_h or pad_w:
        texture = np.pad(texture, ((0, pad_h), (0, pad_w), (0, 0)), mode="edge")
    pixels = np.clip(base + gradient + texture, 0, 255).astype(np.uint8)
    return Image.fromarray(pixels, "RGB")


def _add_noise(image: Image.Image, sigma: float, seed: int) -> Image.Image:
    if sigma <= 0:
        return image
    import numpy as np

    rng = np.random.default_rng(seed + 7)
    pixels = np.asarray(image, dtype=np.float32)
    noisy = np.clip(pixels + rng.normal(0, sigma, pixels.shape), 0, 255).astype(np.uint8)
    return Image.fromarray(noisy, "RGB")


def make_line_set(count: int, seed: int = 0) -> list[tuple[str, Image.Image]]:
    """`count` (text, image) pairs of varied fonts, sizes, backgrounds, noise and rotation."""
    fonts = cjk_fonts()
    rng = random.Random(seed)
    phrases = PHRASES[:]
    rng.shuffle(phrases)
    pairs = []
    for i in range(count):
        text = phrases[i % len(phrases)]
        pairs.append((text, render_line(text, random_style(rng, fonts), seed * 1000 + i)))
    return pairs


def character_error_rate(reference: str, hypothesis: str) -> float:
    """Levenshtein distance between the strings (whitespace ignored) over the reference length."""
    ref = "".join(reference.split())
    hyp = "".join(hypothesis.split())
    previous = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        current = [i]
        for j, h in enumerate(hyp, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (r != h)))
        previous = current
    return previous[-1] / max(1, len(ref))
