"""Text on and around a figure: names as matplotlib draws them, captions, subtitles, titles."""

from __future__ import annotations

import re
import textwrap
from typing import Sequence


def drawn_text(text: object, limit: int = 80) -> str:
    """A dataset or model name from the store as matplotlib draws it literally: printable characters only (a
    control character has no glyph), ``$`` escaped (matplotlib parses ``$...$`` as a formula, and a malformed
    one fails the whole figure), cut to ``limit`` characters."""
    text = "".join(ch if ch.isprintable() else "?" for ch in str(text)).replace("$", r"\$")
    return text if len(text) <= limit else f"{text[:limit]}…"


def caption_text(title: str, sentences: Sequence[str]) -> str:
    """A plot's caption in the leaderboard: its title, then what it shows, as one paragraph."""
    return ". ".join([title, *(s[:1].upper() + s[1:] for s in sentences)]) + "."


def subtitle_text(sentences: Sequence[str], width: int = 105) -> str:
    """What a plot shows, drawn under its title: a sentence a line (wrapped), ``$`` escaped, sigma as σ."""
    lines = []
    for sentence in sentences:
        text = drawn_text(sentence, limit=10_000)
        text = re.sub(r"(\d) sigma\b", r"\1σ", text[:1].upper() + text[1:])
        lines += textwrap.wrap(re.sub(r"\b[Ss]igma\b", "σ", text), width)
    return "\n".join(lines)


def _titles(ax, title: str, subtitle: str) -> None:
    """``title`` above ``subtitle`` (smaller) above the plot, both left-aligned; the subtitle's ``gid`` is
    ``subtitle``."""
    lines = subtitle.count("\n") + 1 if subtitle else 0
    ax.set_title(title, fontsize=10, loc="left", pad=6 + lines * 7.5 * 1.3)
    if subtitle:
        ax.text(0, 1, subtitle, transform=ax.transAxes, fontsize=7.5, va="bottom", ha="left", color="0.2",
                gid="subtitle", linespacing=1.3).set_in_layout(True)
