#!/usr/bin/env python
"""Tokenizer parity fixtures: test/fixtures/tokenizer/extra_expected.json.

Encodes ~180 strings with Hugging Face `tokenizers` and the Qwen2.5 tokenizer.json of
test/fixtures/tokenizer/, so that test/tokenizer.test.ts can check that the native tokenizer
(native/model/tokenizer.cpp) gives the same ids. The strings aim at the corners of the Qwen2
pre-tokenizer regex and of byte-level BPE: many scripts, combining marks, emoji sequences, digit
runs, every kind of whitespace run, contractions, code, URLs, added tokens glued to text, and a
few long paragraphs.

Each case stores the text as written here and the ids of encode(NFC(text),
add_special_tokens=False), which matches added tokens (<|im_start|>, <tool_call>, ...) in the
text like the native encode(text, parseSpecial=true).

Usage (from the repository root; offline, needs only `tokenizers`):
    python3 -m venv .venv-tok && .venv-tok/bin/pip install tokenizers==0.23.2
    .venv-tok/bin/python tools/reference/make_tokenizer_fixtures.py
"""

from __future__ import annotations

import json
import unicodedata
from pathlib import Path

import tokenizers
from tokenizers import Tokenizer

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "test" / "fixtures" / "tokenizer"

SCRIPTS = [
    "你好，世界！今天天气很好。",
    "我们在2024年发布了VideoLLaMA3模型，它支持图像和视频理解。",
    "這是繁體中文的句子，包含「引號」和『書名號』。",
    "日本語の文章です。カタカナとひらがな、漢字が混ざっています。",
    "ｶﾀｶﾅ（半角）とＡＢＣ（全角）１２３",
    "한국어 문장입니다. 안녕하세요!",
    "مرحبا بالعالم، هذا نص عربي.",
    "العدد ١٢٣ والنسبة ٤٥٪",
    "שלום עולם, זה טקסט בעברית.",
    "नमस्ते दुनिया, यह हिंदी पाठ है।",
    "क्षत्रिय ज्ञान श्री",
    "বাংলা ভাষা সুন্দর",
    "தமிழ் மொழி",
    "สวัสดีครับ ภาษาไทยไม่มีการเว้นวรรคระหว่างคำ",
    "ພາສາລາວ",
    "Привет, мир! Это русский текст.",
    "Ελληνικά: Γειά σου Κόσμε",
    "Tiếng Việt có nhiều dấu: Được, Người, Hướng",
    "Ṁūltïplé dïäcrïtïcs: ǅ ǈ ǋ ǲ",
    "ግዕዝ ፊደል",
    "Հայերեն, ქართული",
    "ᠮᠣᠩᠭᠣᠯ ᠪᠢᠴᠢᠭ",
    "𝐁𝐨𝐥𝐝 𝑰𝒕𝒂𝒍𝒊𝒄 𝔉𝔯𝔞𝔨𝔱𝔲𝔯",
    "Ⅻ ⅷ ① ⑳ ½ ¾ ²³",
    "𓀀𓀁 ancient 𐌰𐌱",
]

COMBINING = [
    "e\u0301 a\u0300 o\u0308",  # decomposed: NFC composes them
    "q\u0307\u0323 x\u0304",  # no precomposed form
    "a \u0301b",  # a mark after a space
    "\u0301\u0301 leading marks",
    "Z\u0351\u0360\u0361a\u0352l\u0353g\u0354o\u0355",
    "ḱ\u0327 ǖ",
    "한\u1100\u1161",  # conjoining jamo
]

EMOJI = [
    "😀😃😄 smiles",
    "👍🏻👍🏼👍🏽👍🏾👍🏿",
    "👨\u200d👩\u200d👧\u200d👦 family",
    "👩🏽\u200d💻 and 🧑\u200d🚀",
    "🏳️\u200d🌈 🏴\u200d☠️",
    "🇯🇵🇺🇸🇫🇷",
    "❤️ vs ❤ (VS16)",
    "#️⃣ 1️⃣ keycaps",
    "emoji😀glued😀together",
    "🦙🦙🦙 llamas",
]

NUMBERS = [
    "0",
    "42",
    "1234567890",
    "3.14159265358979",
    "-17 +23 ±5",
    "1,234,567.89",
    "1e-10 6.02e23",
    "0x1F 0b1010 0o777",
    "2024-05-01T12:34:56Z",
    "v1.2.3-beta.4",
    "IPv4 192.168.0.1",
    "abc123def456",
    "１２３ full-width digits",
    "٣٫١٤ Arabic-Indic",
    "१२३ Devanagari digits",
    "room 101, floor 3rd, 4th, 22nd",
    "$100 €50 £30 ¥1000",
    "99.9% of 1/2",
]

WHITESPACE = [
    "a  b",
    "a   b    c",
    "   leading",
    "trailing   ",
    "trailing space ",
    "\t",
    "\t\ttabs\t\t",
    "a\tb\t\tc",
    "\n",
    "\n\n\n",
    "a\nb",
    "a\n\nb",
    "a \nb",
    "a  \n  b",
    "a\r\nb",
    "a\r\n\r\nb",
    "\r",
    "a\rb",
    "line  \n",
    "x \t\n \t y",
    "word\u00a0word",
    "a\u00a0\u00a0b",
    "\u00a0lead nbsp",
    "全角\u3000スペース\u3000\u3000です",
    "\u3000\u3000",
    "em\u2003space thin\u2009space",
    "line\u2028separator\u2029para",
    "next\u0085line",
    "vt\u000bff\u000c",
    "  \n\n  \n ",
    " ",
    "  ",
    "end with newline\n",
    "ends with spaces before newline   \n",
    "zero\u200bwidth",
    "soft\u00adhyphen",
]

CONTRACTIONS = [
    "I'm you're he's we've they'll she'd it't",
    "I'M YOU'RE HE'S WE'VE THEY'LL SHE'D",
    "I'm You'Re He'S We'vE They'lL",
    "don't can't won't shouldn't",
    "DON'T CAN'T",
    "'s 't 're 've 'm 'll 'd",
    "'S'T'RE'VE'M'LL'D",
    "rock'n'roll o'clock",
    "the dog's bone, the dogs' bones",
    "x'ſt long s",
    "''quoted'' 'single'",
    "it’s (curly apostrophe)",
    "'123 '",
]

CODE = [
    "def fib(n):\n    return n if n < 2 else fib(n - 1) + fib(n - 2)\n",
    "for (int i = 0; i < n; ++i) {\n\tsum += a[i] * b[i];\n}\n",
    "const x = await fetch(`/api/${id}`).then((r) => r.json());",
    "if x != nil && y >= 0 || z <= -1 { return }",
    "#include <stdio.h>\nint main(void) { printf(\"%d\\n\", 42); }",
    "SELECT id, name FROM users WHERE age >= 18 ORDER BY name;",
    '{"key": [1, 2.5, "three", null, true], "nested": {"a": {}}}',
    "<div class=\"row\"><span id='x'>text</span></div>",
    "$ ls -la | grep '.json' > out.txt 2>&1",
    "λx. x + 1 ⇒ f ∘ g",
    "a->b::c<<d>>e",
    "!!!???...;;;",
    "----------",
    "==========",
    "**bold** _italic_ `code` ~~strike~~",
    "# Heading\n\n- item 1\n- item 2\n\n1. first\n",
    "| col | col |\n|-----|-----|\n| 1 | 2 |",
    "    indented code\n        more",
    "\\n \\t \\\\ escaped",
    "C:\\Users\\name\\file.txt",
]

URLS = [
    "https://example.com",
    "https://www.example.org/path/to/page.html?query=a%20b&x=1#section-2",
    "http://localhost:8080/api/v1/items/42",
    "ftp://files.example.net/pub/file.tar.gz",
    "mailto:someone@example.com",
    "user.name+tag@sub.domain.co.uk",
    "www.github.com/owner/repo/blob/main/README.md",
    "https://ja.wikipedia.org/wiki/日本語",
]

ADDED = [
    "<|im_start|>user",
    "<|im_start|>system\nYou are helpful.<|im_end|>",
    "a<|im_end|>b",
    "text<|endoftext|>more",
    "<|image_pad|><|image_pad|><|image_pad|><|image_pad|><|image_pad|><|image_pad|><|image_pad|><|image_pad|>",
    "<|vision_start|>" + "<|image_pad|>" * 16 + "<|vision_end|>",
    "<|video_pad|>x<|video_pad|> <|video_pad|>\n",
    " <|im_start|> spaced <|im_end|> ",
    "<|im_start|><|im_start|>",
    "<|im_start",
    "<|im_start|",
    "<|im_start|>>",
    "<<|im_end|>>",
    "<|unknown_token|>",
    "<tool_call>{\"name\": \"f\"}</tool_call>",
    "<|fim_prefix|>def f():<|fim_suffix|>\n<|fim_middle|>",
    "<|object_ref_start|>the cat<|object_ref_end|><|box_start|>(1,2),(3,4)<|box_end|>",
    "<|quad_start|><|quad_end|><|vision_pad|><|repo_name|><|file_sep|>",
    "中文<|im_end|>中文",
    "'s<|im_end|>'s",
]

MIXED = [
    "Hello",
    "hello world",
    "HELLO WORLD",
    "Hello, World!",
    "The quick brown fox jumps over the lazy dog.",
    "supercalifragilisticexpialidocious",
    "antidisestablishmentarianism pneumonoultramicroscopicsilicovolcanoconiosis",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    "ab" * 40,
    "Mixed中文and English混合text",
    "Straße Größe ĳ ŉ ß ẞ",
    "Ⓐⓑⓒ ⒜⒝",
    "ﬁ ﬂ ﬀ ligatures",
    "¿Qué? ¡Hola! «guillemets» „Anführung“",
    "“smart quotes” and ‘single’ — em dash – en dash … ellipsis",
    "© ® ™ § ¶ † ‡ • ° ′ ″",
    "→ ← ↑ ↓ ⇒ ∀ ∃ ∈ ∉ ∑ ∏ √ ∞ ≠ ≤ ≥",
    "\u0000null\u0001ctrl\u007fdel",
    "\ufeffBOM at start",
    "\ufffd replacement",
    "Private use \ue000\uf8ff",
    "tab\tthen 中文\tthen 123",
    "Q: What's 2+2?\nA: It's 4.",
]

PARAGRAPHS = [
    (
        "VideoLLaMA 3 is a multimodal foundation model for image and video understanding. "
        "It follows a vision-centric design: the vision encoder is adapted to accept images of "
        "any resolution, producing a variable number of tokens, and for videos it reduces the "
        "number of tokens by pruning patches that barely change between frames. In our experiments "
        "(see Table 3, rows 4-7), the 7B model reached 67.1% on one benchmark and 80.1 on another; "
        "smaller 2B variants trade about 5 points for a 3.5x speed-up.\n\n"
        "Training had four stages: vision encoder adaptation, vision-language alignment, "
        "multi-task fine-tuning, and video-centric fine-tuning. Each stage used data that was "
        "filtered, re-captioned and de-duplicated; we don't claim the mixture is optimal, but it's "
        "what worked.   Trailing spaces, tabs\tand\r\nWindows newlines appear here on purpose.\n"
    ),
    (
        "人工智能（AI）正在改变我们的生活方式。从智能手机上的语音助手，到自动驾驶汽车，再到医疗影像诊断，"
        "AI技术已经渗透到各个领域。2023年，大型语言模型（LLM）取得了突破性进展，GPT-4、Qwen等模型展示了"
        "惊人的理解和生成能力。然而，这些技术也带来了新的挑战：隐私保护、算法偏见、以及就业结构的变化。"
        "我们需要在创新与监管之间找到平衡。\n\n"
        "日本では、AIの研究開発が盛んに行われています。東京大学や理化学研究所などが中心となり、"
        "様々なプロジェクトが進められています。「ロボット工学」と「自然言語処理」は特に注目されている分野です。"
    ),
    (
        "def tokenize(text: str) -> list[int]:\n"
        "    \"\"\"Split text into pieces, then apply BPE merges by rank.\"\"\"\n"
        "    pieces = PATTERN.findall(text)  # e.g. ['Hello', ',', ' world', '!']\n"
        "    ids = []\n"
        "    for piece in pieces:\n"
        "        word = [BYTE_TO_ID[b] for b in piece.encode('utf-8')]\n"
        "        while len(word) > 1:\n"
        "            pairs = {(a, b): RANKS.get((a, b), 1 << 30) for a, b in zip(word, word[1:])}\n"
        "            best = min(pairs, key=pairs.get)\n"
        "            if pairs[best] == 1 << 30:\n"
        "                break\n"
        "            word = merge(word, best)\n"
        "        ids.extend(word)\n"
        "    return ids\n\n\n"
        "# Мультиязычный комментарий: العربية, हिन्दी, ไทย, 😀 — all in one line!  \n"
    ),
]

CASES = SCRIPTS + COMBINING + EMOJI + NUMBERS + WHITESPACE + CONTRACTIONS + CODE + URLS + ADDED + MIXED + PARAGRAPHS


def main() -> None:
    tok = Tokenizer.from_file(str(FIXTURES / "tokenizer.json"))
    cases = []
    for text in CASES:
        nfc = unicodedata.normalize("NFC", text)
        ids = tok.encode(nfc, add_special_tokens=False).ids
        cases.append({"text": text, "ids": ids})
    out = {
        "generator": f"tools/reference/make_tokenizer_fixtures.py, tokenizers {tokenizers.__version__}, "
        "test/fixtures/tokenizer/tokenizer.json (Qwen2.5); ids = encode(NFC(text), add_special_tokens=False)",
        "cases": cases,
    }
    path = FIXTURES / "extra_expected.json"
    # One case per line: readable diffs, small file.
    body = ",\n".join("    " + json.dumps(c, ensure_ascii=False) for c in cases)
    head = json.dumps({"generator": out["generator"]}, ensure_ascii=False)[:-1]
    path.write_text(f'{head},\n  "cases": [\n{body}\n  ]\n}}\n', encoding="utf-8")
    print(f"wrote {path} ({len(cases)} cases, {path.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
