"""The one renderer of every table: a :class:`~mentor_ray.report.board.Table` (rows under typed columns;
``Table.frame`` is them as the pandas DataFrame the Styler renders) as Markdown, LaTeX, HTML or plain text,
and the leaderboard's board and the benchmarks' blocks around such tables.

Libraries: LaTeX and HTML are pandas' ``Styler`` (``to_latex``: the tabular, with booktabs rules and the
group headers as ``\\multicolumn``; ``to_html``: the table, with a class per cell and the header alignment
as per-column CSS). Markdown and plain text are small column writers here (no ``tabulate``): Markdown tables
need one header row and an alignment row, plain text a column-aligned layout, and both need this module's
own escaping.

Rules, the same in every format (``tests/test_render.py``):

- numbers right-aligned with the column's fixed decimals, text left-aligned (Markdown ``|---:|`` /
  ``|:---|``; TeX ``r`` / ``l``, ``p{...}`` for wrapped text; HTML classes ``num`` / ``text``);
- percentages as percentages (``37.5%``; a share above 0 too small for the decimals is ``<0.1%``);
- best and second of a metric column: Markdown ``**x**`` / ``_x_``, TeX ``\\textbf`` / ``\\underline``,
  HTML ``<b>`` / ``<u>``, plain text ``x (1)`` / ``x (2)`` with a legend under the table; the significance
  star: Markdown ``\\*``, TeX ``$^{*}$``, HTML ``<sup>*</sup>``, plain text ``*``;
- a missing value is the dash (``--`` in TeX);
- TeX is ASCII only: ``−`` is ``$-$``, ``±`` ``$\\pm$``, ``–`` ``--``, accented letters TeX accents, any
  other character outside ASCII ``?``; a wide table is split into parts of at most :data:`TEX_COLUMNS`
  columns and about :data:`TEX_CHARS` characters, repeating its key columns, and each part is scaled down
  should it still be wider than the line (``\\resizebox``: ``\\usepackage{booktabs,graphicx}``);
- HTML: long text wraps (``wrap`` columns have a maximum width), numbers never wrap, and a table wider than
  about :data:`HTML_CHARS` characters (a 1,400 px window) is split as in TeX;
- plain text (what a command prints on a terminal) has no markup: no HTML tag, no backslash escape, no
  ``**``; wide tables are split as in TeX at :data:`TEXT_CHARS` characters.
"""

from __future__ import annotations

import dataclasses
import html
import re
import unicodedata
from typing import Callable, Sequence

from mentor_ray.report.board import DASH, DIGITS, SECTIONS, Board, Cell, Column, Percent, Table, missing, real

TEX_COLUMNS = 10  # at most this many columns in one TeX table (a wider one is split)
TEX_CHARS = 100  # about this many characters across a TeX table (\small, a 6.5 in line)
TEXT_CHARS = 120  # and across a table printed on a terminal
HTML_CHARS = 150  # and across an HTML table (a 1,400 px window: about 8.5 px a character)
WRAP_CHARS = 28  # a wrapped text column's width, in characters (TeX p{...}, HTML max-width)
FORMATS = ("md", "tex", "html", "text")


# --------------------------------------------------------------------------- escaping


_TEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "<": r"$<$",
                ">": r"$>$", "|": r"$|$"}
_TEX_UNICODE = {"–": "--", "—": "---", "−": "$-$", "±": r"$\pm$", "×": r"$\times$", "≤": r"$\leq$",
                "≥": r"$\geq$", "…": r"\dots{}", "→": r"$\rightarrow$", "←": r"$\leftarrow$", "‘": "`",
                "’": "'", "“": "``", "”": "''", "λ": r"$\lambda$", "τ": r"$\tau$", "α": r"$\alpha$",
                "µ": r"$\mu$", "μ": r"$\mu$", "°": r"$^{\circ}$", "\u00a0": "~", "ß": r"\ss{}", "æ": r"\ae{}",
                "ø": r"\o{}", "å": r"\aa{}", "Æ": r"\AE{}", "Ø": r"\O{}", "Å": r"\AA{}", "†": r"\dag{}"}
_TEX_ACCENTS = {"\u0301": "'", "\u0300": "`", "\u0302": "^", "\u0308": '"', "\u0303": "~", "\u0304": "=",
                "\u0327": "c", "\u030c": "v", "\u0306": "u", "\u030a": "r", "\u0328": "k"}
_PLAIN = {"–": "-", "—": "--", "−": "-", "±": "+/-", "×": "x", "≤": "<=", "≥": ">=", "…": "...", "→": "->",
          "‘": "'", "’": "'", "“": '"', "”": '"', "\u00a0": " ", "†": "(dagger)"}


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def tex_escape(text: str) -> str:
    """Text as TeX text mode, ASCII only: TeX's special characters escaped, the few non-ASCII characters
    this project writes (``−``, ``±``, ``–``, ...) and accented Latin letters as TeX, anything else ``?``."""
    out = []
    for ch in _one_line(text):
        if ch in _TEX_SPECIAL:
            out.append(_TEX_SPECIAL[ch])
        elif " " <= ch <= "~":
            out.append(ch)
        elif ch in _TEX_UNICODE:
            out.append(_TEX_UNICODE[ch])
        else:
            out.append(_tex_accented(ch))
    return "".join(out)


def _tex_accented(ch: str) -> str:
    base, *marks = unicodedata.normalize("NFD", ch)
    if " " <= base <= "~" and base.isalpha() and len(marks) == 1 and marks[0] in _TEX_ACCENTS:
        base = {"i": r"\i", "j": r"\j"}.get(base, base)
        return f"\\{_TEX_ACCENTS[marks[0]]}{{{base}}}"
    return "?"


def tex_comment(text: str) -> str:
    """``text`` as the rest of a TeX comment line: one line (a line end would end the comment, and what follows
    would be run by TeX: ``\\input{...}``), and ASCII (``±`` as ``+/-``, any other non-ASCII ``?``)."""
    return "".join(c if " " <= c <= "~" else _PLAIN.get(c, "?") for c in _one_line(text))


_TAG = re.compile(r"<(?=[A-Za-z/!?])")


def md_escape(text: str) -> str:
    """Text from a results store as Markdown table text: on one line, no column break (``|``), and no HTML tag
    (Markdown renders raw HTML; the store may hold a copied-in file with any text in it): a ``<`` that could
    open a tag is ``&lt;`` (``<=`` stays as it is)."""
    return _TAG.sub("&lt;", _one_line(text).replace("|", "\\|"))


def text_escape(text: str) -> str:
    """Text for a terminal: one line, no control character (``?``: an escape sequence would drive the
    terminal), and no ``<`` that could open a tag (``‹``), so that a table copied into Markdown or HTML
    carries no markup either."""
    out = "".join("?" if unicodedata.category(c).startswith("C") else c for c in _one_line(text))
    return _TAG.sub("‹", out)


# --------------------------------------------------------------------------- inline Markdown (notes, intro)


_CODE, _BOLD = re.compile(r"`([^`]+)`"), re.compile(r"\*\*([^*]+)\*\*")


def inline(text: str, fmt: str) -> str:
    """Our own prose (notes, the intro, benchmark bullets: Markdown with `code` and **bold**) in ``fmt``."""
    if fmt == "md":
        return text
    if fmt == "html":
        out = _CODE.sub(r"<code>\1</code>", html.escape(text))
        return _BOLD.sub(r"<b>\1</b>", out)
    if fmt == "text":
        return text_escape(_BOLD.sub(r"\1", _CODE.sub(r"\1", text)))
    parts = text.split("`")  # tex: odd parts were code spans
    if len(parts) % 2 == 0:  # an unpaired backtick: no code span
        parts = [text.replace("`", "'")]
    out = [tex_escape(p) if i % 2 == 0 else rf"\texttt{{{tex_escape(p)}}}" for i, p in enumerate(parts)]
    return _BOLD.sub(r"\\textbf{\1}", "".join(out))


# --------------------------------------------------------------------------- cells


@dataclasses.dataclass(frozen=True)
class Style:
    esc: Callable[[str], str]
    bold: str
    under: str
    star: str
    pm: str
    dash: str


STYLES = {
    "md": Style(md_escape, "**{}**", "_{}_", "\\*", " ± ", DASH),
    "tex": Style(tex_escape, r"\textbf{{{}}}", r"\underline{{{}}}", r"$^{*}$", r" $\pm$ ", "--"),
    "html": Style(html.escape, "<b>{}</b>", "<u>{}</u>", "<sup>*</sup>", " ± ", DASH),
    "text": Style(text_escape, "{}", "{}", "*", " ± ", DASH),
}
RANKS = {1: " (1)", 2: " (2)"}  # plain text's marks (a legend under the table says what they mean)


def _number(value: float, decimals: int, thousands: bool = False) -> str:
    text = format(value, f"{',' if thousands else ''}.{decimals}f")
    return text[1:] if text.startswith("-") and not text.strip("-0.,") else text  # no "-0.00"


def _percent(value: float, decimals: int) -> str:
    if 0 < value < 0.5 * 10 ** -decimals:  # above 0, but 0 at these decimals
        return f"<{10 ** -decimals:.{decimals}f}%"
    return _number(value, decimals) + "%"


def _duration(seconds: float) -> str:
    s = int(round(seconds))
    return f"{seconds:.1f}s" if seconds < 60 else f"{s // 60}m {s % 60:02d}s" if s < 3600 else \
        f"{s // 3600}h {s % 3600 // 60:02d}m"


def _pair(value: object) -> tuple[float, float] | None:
    if isinstance(value, (tuple, list)) and len(value) == 2:
        a, b = real(value[0]), real(value[1])
        return None if a is None or b is None else (a, b)
    return None


def _plain(value: object, col: Column) -> str | None:
    """A non-metric value of a numeric column as ASCII text (None: missing)."""
    if isinstance(value, Percent):
        v = real(value.value)
        return None if v is None else _percent(v, value.decimals)
    if col.kind in ("interval", "fraction"):
        pair = _pair(value)
        if pair is None:
            return None
        if col.kind == "fraction":
            return f"{pair[0]:,.0f} / {pair[1]:,.0f}"
        return f"[{pair[0]:+.{col.decimals}f}, {pair[1]:+.{col.decimals}f}]"
    v = real(value)
    if v is None:
        return None
    if col.kind == "percent":
        return _percent(v, col.decimals)
    if col.kind == "duration":
        return _duration(v)
    if col.kind == "sci":
        return f"{v:.{col.decimals}e}"
    if col.kind == "pvalue":
        floor = 10 ** -col.decimals
        return f"<{floor:.{col.decimals}f}" if v < floor else _number(v, col.decimals)
    return _number(v, col.decimals, col.thousands) + col.suffix  # number, or a plain float in a metric column


def _numeric(text: str, fmt: str, sci: bool = False) -> str:
    """An ASCII number as ``fmt``: escaped, and in TeX its minus signs math minus."""
    out = STYLES[fmt].esc(text)
    return out.replace("-", "$-$") if fmt == "tex" and not sci else out


def format_cell(value: object, col: Column, fmt: str, star_slot: bool = False, rank_slot: bool = False) -> str:
    """One frame value of column ``col`` as ``fmt`` (md, tex, html, text). Plain text pads a metric cell so that
    a column's values line up: a space where a star could be (``star_slot``) and where a rank could be
    (``rank_slot``)."""
    st = STYLES[fmt]
    pad = fmt == "text" and col.kind == "metric"
    rank = " " * 4 if pad and rank_slot else ""
    if isinstance(value, str):  # a table's own text: "" is a blank label, any other text as it is
        if col.inline:
            return md_escape(value) if fmt == "md" else inline(value, fmt)
        return st.esc(value) + (rank if col.kind != "text" else "") if value else ""
    if isinstance(value, Cell):
        mean = real(value.mean)
        if mean is None:
            return st.dash + rank
        text = _numeric(_number(mean, col.decimals), fmt)
        if fmt == "text":
            rank = RANKS.get(value.mark, rank) if rank_slot else ""
        else:
            text = st.bold.format(text) if value.mark == 1 else st.under.format(text) if value.mark == 2 else text
        text += st.star if value.star else " " if pad and star_slot else ""
        std = real(value.std)
        if std is not None:
            text += st.pm + _numeric(_number(std, col.decimals), fmt)
        if value.note:
            text += " " + st.esc(value.note)
        return text + rank
    if col.kind == "text":
        return st.dash if missing(value) else st.esc(str(value))
    plain = _plain(value, col)
    if plain is None:
        return st.dash + rank
    return _numeric(plain, fmt, sci=col.kind == "sci") + rank


def _slots(t: Table) -> list[tuple[bool, bool]]:
    """Per column, whether any of its cells has a star and any a mark (plain text pads for them)."""
    cells = t.cells()
    out = []
    for j, col in enumerate(t.columns):
        values = [r[j] for r in cells if isinstance(r[j], Cell)] if col.kind == "metric" else []
        out.append((any(c.star for c in values), any(c.mark for c in values)))
    return out


def formatted(t: Table, fmt: str) -> list[list[str]]:
    """Every cell of ``t`` as ``fmt``."""
    slots = _slots(t)
    return [[format_cell(v, c, fmt, *s) for v, c, s in zip(row, t.columns, slots)] for row in t.cells()]


def _legend(t: Table) -> str:
    """Plain text's legend of the marks and the star, for a table that has any."""
    slots = _slots(t)
    parts = (["(1) best, (2) second in its column"] if any(m for _, m in slots) else []) + \
        (["* significant (see the note)"] if any(s for s, _ in slots) else [])
    return "; ".join(parts)


# --------------------------------------------------------------------------- splitting wide tables


def _head_width(header: str, lines: int) -> int:
    """The width a header needs on at most about ``lines`` lines (never narrower than its longest word)."""
    return max([-(-len(header) // lines), *map(len, header.split())])


def widths(t: Table, fmt: str = "tex") -> list[int]:
    """Each column's width in characters as plain text: in TeX and HTML a wrapped column is at most
    :data:`WRAP_CHARS` wide; a header wraps onto two lines in HTML and three in plain text."""
    cells = formatted(t, "text")
    out = []
    for j, col in enumerate(t.columns):
        head = _head_width(col.header, {"html": 2, "text": 3}.get(fmt, 1))
        w = max([head, *(len(r[j].rstrip()) for r in cells)])
        out.append(min(w, WRAP_CHARS) if col.wrap and fmt != "text" else w)
    return out


def parts(t: Table, chars: int, columns: int = 10_000, fmt: str = "tex") -> list[list[int]]:
    """The column positions of each part of ``t`` when at most ``chars`` characters (``columns`` columns) fit
    across in ``fmt`` (:func:`widths`): every part repeats the key columns; a group (Table 2's dataset) is never
    split."""
    w = [x + (2 if fmt == "text" else 3) for x in widths(t, fmt)]  # a column's padding (and rule)
    keys = list(range(min(t.keys, len(t.columns))))
    units: list[list[int]] = []
    for j in range(len(keys), len(t.columns)):
        group = t.columns[j].group
        if units and group and t.columns[units[-1][-1]].group == group:
            units[-1].append(j)
        else:
            units.append([j])
    out: list[list[int]] = []
    current: list[int] = []
    base = sum(w[k] for k in keys)
    for unit in units:
        if current and (base + sum(w[j] for j in current + unit) > chars
                        or len(keys) + len(current) + len(unit) > columns):
            out.append(current)
            current = []
        current += unit
    out.append(current)
    return [keys + p for p in out]


def _part(t: Table, cols: list[int], i: int, n: int) -> Table:
    if n == 1:
        return t
    return t.select(cols, key=t.key if i == 0 else f"{t.key}-{i + 1}", title=f"{t.title} ({i + 1}/{n})",
                    note=t.note if i == n - 1 else "")


# --------------------------------------------------------------------------- one table


def table_md(t: Table, heading: bool = True) -> str:
    """Markdown: one header row (a group's name in front of its columns' headers), the alignment row."""
    lines = [f"### {md_escape(t.title)}", ""] if heading and t.title else []
    lines += ["| " + " | ".join(md_escape(c.label) for c in t.columns) + " |",
              "|" + "|".join("---:" if c.right else ":---" for c in t.columns) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in formatted(t, "md")]
    if t.note:
        lines += ["", f"Note: {t.note}"]
    return "\n".join(lines)


def table_text(t: Table, heading: bool = True) -> str:
    """Plain text for a terminal: columns padded and aligned, a group's name over its columns, the legend of
    the marks, split into parts of at most :data:`TEXT_CHARS` characters."""
    split = parts(t, TEXT_CHARS, fmt="text")
    blocks = [_text_part(_part(t, cols, i, len(split)), heading) for i, cols in enumerate(split)]
    return "\n\n".join(blocks)


def _text_part(t: Table, heading: bool) -> str:
    cells = formatted(t, "text")
    for j in range(len(t.columns)):  # trim what every cell of a column pads at its end
        pad = min((len(r[j]) - len(r[j].rstrip()) for r in cells if r[j]), default=0)
        if pad:
            for r in cells:
                r[j] = r[j][:-pad] if r[j] else r[j]
    head = [text_escape(c.header) for c in t.columns]
    w = [max([_head_width(h, 3), *(len(r[j]) for r in cells)]) for j, h in enumerate(head)]
    wrapped = [_wrap(h, n) for h, n in zip(head, w)]
    depth = max(map(len, wrapped), default=1)
    head_lines = [[*[""] * (depth - len(h)), *h] for h in wrapped]  # a header's last line on the rule

    def line(values: Sequence[str], right: Sequence[bool]) -> str:
        return "  ".join(v.rjust(n) if r else v.ljust(n) for v, n, r in zip(values, w, right)).rstrip()

    right = [c.right for c in t.columns]
    lines = [f"### {text_escape(t.title)}", ""] if heading and t.title else []
    if any(c.group for c in t.columns):
        spans: list[tuple[str, int]] = []
        for c, n in zip(t.columns, w):
            if spans and c.group and spans[-1][0] == c.group:
                spans[-1] = (c.group, spans[-1][1] + n + 2)
            else:
                spans.append((c.group, n))
        lines.append("  ".join(text_escape(g)[:n].ljust(n) for g, n in spans).rstrip())
    lines += [line([h[i] for h in head_lines], right) for i in range(depth)]
    lines.append("  ".join("-" * n for n in w))
    lines += [line(r, right) for r in cells]
    legend = _legend(t)
    if legend:
        lines += ["", legend]
    if t.note:
        lines += ["", "Note: " + inline(t.note, "text")]
    return "\n".join(lines)


def _wrap(text: str, width: int) -> list[str]:
    """``text`` in lines of at most ``width`` characters, broken between words."""
    lines: list[str] = []
    for word in text.split():
        if lines and len(lines[-1]) + 1 + len(word) <= width:
            lines[-1] += " " + word
        else:
            lines.append(word)
    return lines or [""]


def _tex_spec(c: Column) -> str:
    return f"p{{{WRAP_CHARS * 0.5:g}em}}" if c.wrap and not c.right else "r" if c.right else "l"


def table_tex(t: Table) -> str:
    """LaTeX: a ``table`` float per part (booktabs rules, the group headers spanning their columns with a rule
    under each), its note under the last part; each tabular scaled down only if wider than the line."""
    split = parts(t, TEX_CHARS, TEX_COLUMNS)
    return "\n\n".join(_tex_part(_part(t, cols, i, len(split))) for i, cols in enumerate(split))


def _styler(t: Table, fmt: str):
    """pandas' Styler over what ``fmt`` shows of each cell (computed here, once per table)."""
    from pandas.io.formats.style import Styler

    frame = t.frame
    if t.rows:
        frame.iloc[:, :] = formatted(t, fmt)
    styler = Styler(frame, uuid=t.key, cell_ids=False).hide(axis="index")
    esc = STYLES[fmt].esc
    return styler.format(lambda v: v, escape=None).format_index(lambda v: esc(str(v)), axis=1)


def _tex_part(t: Table) -> str:
    body = _styler(t, "tex").to_latex(column_format="".join(_tex_spec(c) for c in t.columns), hrules=True,
                                      multicol_align="c", sparse_columns=True)
    lines = body.strip().splitlines()
    if any(c.group for c in t.columns):  # a rule under each group's name
        rules, start = [], 0
        while start < len(t.columns):
            end = start
            while end + 1 < len(t.columns) and t.columns[end + 1].group == t.columns[start].group:
                end += 1
            if t.columns[start].group:
                rules.append(rf"\cmidrule(lr){{{start + 1}-{end + 1}}}")
            start = end + 1
        top = lines.index(r"\toprule")
        lines.insert(top + 2, " ".join(rules))
    out = [r"\begin{table}[t]", r"\centering", rf"\caption{{{tex_escape(t.title)}}}", rf"\label{{tab:{t.key}}}",
           r"\small", r"\resizebox{\ifdim\width>\linewidth\linewidth\else\width\fi}{!}{%", *lines[:-1],
           lines[-1] + "}"]
    if t.note:
        out.append(r"\par\smallskip\footnotesize Note: " + inline(t.note, "tex"))
    return "\n".join(out + [r"\end{table}"])


def table_html(t: Table, heading: bool = True) -> str:
    """HTML: pandas' table with a class per cell (``num`` right-aligned, ``text`` left, ``wrap`` wrapping at a
    maximum width) and its header cells aligned as their columns; split into parts of about
    :data:`HTML_CHARS` characters, and a part still too wide scrolls sideways rather than overflow the page."""
    split = parts(t, HTML_CHARS, fmt="html")
    return "\n".join(_html_part(_part(t, cols, i, len(split)), heading) for i, cols in enumerate(split))


def _html_part(t: Table, heading: bool) -> str:
    styler = _styler(t, "html")
    last = "level1" if any(c.group for c in t.columns) else "level0"
    if t.rows:
        classes = styler.data.copy()
        kinds = ["num" if c.right else "text wrap" if c.wrap else "text" for c in t.columns]
        classes.iloc[:, :] = [kinds] * len(t.rows)
        styler.set_td_classes(classes)
    styles = [{"selector": f"th.col_heading.{last}.col{j}", "props": "text-align: right;"}
              for j, c in enumerate(t.columns) if c.right]
    styles += [{"selector": "th.col_heading.level0", "props": "text-align: center;"}] if last == "level1" else []
    table = styler.set_table_styles(styles).to_html()
    head = f'<h3 id="{html.escape(t.key)}">{html.escape(t.title)}</h3>\n' if heading and t.title else ""
    note = f'\n<p class="note">Note: {inline(t.note, "html")}</p>' if t.note else ""
    return f'{head}<div class="table">\n{table}</div>{note}'


def render_table(t: Table, fmt: str) -> str:
    return {"md": table_md, "tex": table_tex, "html": table_html, "text": table_text}[fmt](t)


# --------------------------------------------------------------------------- the leaderboard


MARKS = {
    "md": "Per column: best **bold**, second _italic_",
    "html": "Per column: best <b>bold</b>, second <u>underlined</u>",
    "tex": "Per column: best bold, second underlined",
    "text": "Per column: best marked (1), second (2)",
}


def marks_legend(fmt: str) -> str:
    return f"{MARKS[fmt]} (compared at {DIGITS} decimals; ties share the mark)."


def _sections(board: Board) -> list[tuple[str, list[Table]]]:
    return [(s, [t for t in board.tables if t.section == s]) for s in SECTIONS
            if any(t.section == s for t in board.tables)]


def _plot_links(board: Board) -> list[str]:
    link = str.maketrans({"[": "\\[", "]": "\\]"})  # a bracket in a caption would end the image's alt text
    return [f"![{md_escape(p.caption or p.title).translate(link)}]({p.path})" for p in board.plots]


def render_markdown(board: Board) -> str:
    parts_ = ["# MENTOR leaderboard", "", *board.intro, "", marks_legend("md")]
    for section, tables in _sections(board):
        parts_ += ["", f"## {section}", *("\n" + table_md(t) for t in tables)]
    if board.plots:
        parts_ += ["", "## Plots", "", *_plot_links(board)]
    if board.notes:
        parts_ += ["", "## Notes", ""] + [f"- {md_escape(n)}" for n in board.notes]
    return "\n".join(parts_) + "\n"


def render_text(board: Board) -> str:
    """The board for a terminal: the Markdown's structure (``#`` headings), every table as plain text."""
    parts_ = ["# MENTOR leaderboard", "", *(inline(p, "text") for p in board.intro), "", marks_legend("text")]
    for section, tables in _sections(board):
        parts_ += ["", f"## {section}", *("\n" + table_text(t) for t in tables)]
    if board.plots:
        parts_ += ["", "## Plots", ""] + [f"- {text_escape(p.path)}: {text_escape(p.title)}" for p in board.plots]
    if board.notes:
        parts_ += ["", "## Notes", ""] + [f"- {text_escape(n)}" for n in board.notes]
    return "\n".join(parts_) + "\n"


def render_tex(board: Board) -> str:
    head = ["% MENTOR leaderboard (python -m mentor_ray.leaderboard); needs \\usepackage{booktabs,graphicx}\n"
            + "\n".join(f"% {tex_comment(line)}" for line in [*board.intro, marks_legend("tex")])]
    notes = [f"% note: {tex_comment(n)}" for n in board.notes]
    return "\n\n".join(head + [table_tex(t) for t in board.tables]) + "\n" + "\n".join(notes) + "\n"


CSS = ("body{font-family:sans-serif;margin:2em auto;padding:0 2em;max-width:84em;box-sizing:border-box}"
       "div.table{overflow-x:auto;max-width:100%}table{border-collapse:collapse;margin:1em 0}"
       "th,td{border-bottom:1px solid #ccc;padding:.25em .6em;vertical-align:top}th{text-align:left}"
       "td.num{text-align:right;white-space:nowrap;font-variant-numeric:tabular-nums}"
       f"td.text{{text-align:left;white-space:nowrap}}td.wrap{{white-space:normal;min-width:12ch;max-width:{WRAP_CHARS}ch;"
       "overflow-wrap:anywhere}"
       "sup{line-height:0}p.note{font-size:90%;color:#333;max-width:60em}figure{display:inline-block;margin:1em}"
       "figure img{max-width:100%}")


def render_html(board: Board) -> str:
    intro = "".join(f"<p>{p}</p>\n" for p in [*(inline(p, "html") for p in board.intro), marks_legend("html")])
    out = [f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>MENTOR leaderboard</title>"
           f"<style>{CSS}</style></head>\n<body>\n<h1>MENTOR leaderboard</h1>\n{intro}"]
    for section, tables in _sections(board):
        out.append(f"<h2>{html.escape(section)}</h2>\n" + "\n".join(table_html(t) for t in tables))
    if board.plots:
        figs = (f'<figure><img src="{html.escape(p.path)}" alt="{html.escape(p.caption or p.title)}">'
                f"<figcaption>{html.escape(p.title)}</figcaption></figure>" for p in board.plots)
        out.append("<h2>Plots</h2>\n" + "\n".join(figs))
    if board.notes:
        items = "\n".join(f"<li>{html.escape(n)}</li>" for n in board.notes)
        out.append(f"<h2>Notes</h2>\n<ul>\n{items}\n</ul>")
    return "\n".join(out) + "\n</body></html>\n"


def render_board(board: Board, fmt: str) -> str:
    return {"md": render_markdown, "tex": render_tex, "html": render_html, "text": render_text}[fmt](board)


# --------------------------------------------------------------------------- benchmark blocks


@dataclasses.dataclass(frozen=True)
class Heading:
    text: str
    level: int = 4


@dataclasses.dataclass(frozen=True)
class Bullets:
    lines: tuple[str, ...]  # inline Markdown


@dataclasses.dataclass
class Block:
    """A benchmark's result: a heading, then bullets, paragraphs (inline Markdown), sub-headings and tables
    in order. Written as Markdown into ``docs/benchmarks.md``, printed as plain text."""

    title: str
    items: list[Heading | Bullets | str | Table]
    level: int = 3

    def tables(self) -> list[Table]:
        return [i for i in self.items if isinstance(i, Table)]


def _block(block: Block, fmt: str) -> str:
    """A benchmark block as Markdown (``md``: for the docs file) or plain text (``text``: for the terminal)."""
    esc = text_escape if fmt == "text" else (lambda t: t)
    table = table_text if fmt == "text" else table_md
    out = [f"{'#' * block.level} {esc(block.title)}"]
    for item in block.items:
        if isinstance(item, Heading):
            out.append(f"{'#' * item.level} {esc(item.text)}")
        elif isinstance(item, Bullets):
            out.append("\n".join(f"- {inline(line, fmt)}" for line in item.lines))
        elif isinstance(item, Table):
            out.append(table(item, heading=False))
        else:
            out.append(inline(item, fmt))
    return "\n\n".join(out)


def block_md(block: Block) -> str:
    return _block(block, "md")


def block_text(block: Block) -> str:
    return _block(block, "text")
