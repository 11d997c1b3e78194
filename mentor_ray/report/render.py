"""Rendering a :class:`~mentor_ray.report.board.Board` as Markdown, LaTeX (booktabs) and HTML."""

from __future__ import annotations

import dataclasses
import html
import re
from typing import Callable

from mentor_ray.report.board import DASH, DIGITS, SECTIONS, Board, Cell, Table, missing


@dataclasses.dataclass(frozen=True)
class Style:
    bold: str
    under: str
    star: str
    pm: str
    dash: str
    esc: Callable[[str], str]


def tex_escape(text: str) -> str:
    table = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
             "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "–": "--", "±": r"$\pm$"}
    return "".join(table.get(ch, ch) for ch in text)


def md_escape(text: str) -> str:
    """Text from a results store as Markdown table text: on one line, no column break (``|``), and no HTML tag
    (Markdown renders raw HTML; the store may hold a copied-in file with any text in it)."""
    return " ".join(text.split()).replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")


def tex_comment(text: str) -> str:
    """``text`` as the rest of a TeX comment line: a line end in it would end the comment, and what follows
    would be run by TeX (``\\input{...}``)."""
    return " ".join(text.split())


MD = Style("**{}**", "<u>{}</u>", "\\*", " ± ", DASH, md_escape)
TEX = Style(r"\textbf{{{}}}", r"\underline{{{}}}", r"$^{*}$", r" $\pm$ ", "--", tex_escape)
HTML = Style("<b>{}</b>", "<u>{}</u>", "<sup>*</sup>", " ± ", DASH, html.escape)


def render_cell(cell: object, st: Style) -> str:
    """A cell as text. Tables hold ``str`` and :class:`Cell`; anything else that reaches here (a frame value
    a table passed on as it was) still renders, and a missing value (None, NaN, ...) as the dash."""
    if isinstance(cell, str):  # a table's own text, "" (a blank label) included
        return st.esc(cell)
    if not isinstance(cell, Cell):
        return st.dash if missing(cell) else st.esc(str(cell))
    if missing(cell.mean):
        return st.dash
    text = f"{cell.mean:.{DIGITS}f}"
    text = st.bold.format(text) if cell.mark == 1 else st.under.format(text) if cell.mark == 2 else text
    text += st.star if cell.star else ""
    return text if missing(cell.std) else f"{text}{st.pm}{cell.std:.{DIGITS}f}"


def _group_labels(t: Table) -> list[str]:
    """The header with each group's name in front (Markdown has one header row)."""
    lead = len(t.header) - sum(n for _, n in t.groups)
    names = [g for g, n in t.groups for _ in range(n)]
    return t.header[:lead] + [f"{g} {h}" for g, h in zip(names, t.header[lead:])]


def table_md(t: Table) -> str:
    header = _group_labels(t) if t.groups else t.header
    lines = [f"### {MD.esc(t.title)}", "", "| " + " | ".join(map(MD.esc, header)) + " |",
             "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(render_cell(c, MD) for c in row) + " |" for row in t.rows]
    if t.note:
        lines += ["", f"Note: {t.note}"]
    return "\n".join(lines)


def table_tex(t: Table) -> str:
    lead = len(t.header) - sum(n for _, n in t.groups)
    lines = [r"\begin{table}[t]", r"\centering", rf"\caption{{{tex_escape(t.title)}}}",
             rf"\label{{tab:{t.key}}}", rf"\begin{{tabular}}{{{'l' * lead}{'r' * (len(t.header) - lead)}}}",
             r"\toprule"]
    if t.groups:
        spans = [rf"\multicolumn{{{n}}}{{c}}{{{tex_escape(g)}}}" for g, n in t.groups]
        lines.append(" & " * lead + " & ".join(spans) + r" \\")
        starts = [lead + 1 + sum(n for _, n in t.groups[:i]) for i in range(len(t.groups))]
        lines.append(" ".join(rf"\cmidrule(lr){{{s}-{s + n - 1}}}" for s, (_, n) in zip(starts, t.groups)))
    lines += [" & ".join(map(tex_escape, t.header)) + r" \\", r"\midrule"]
    lines += [" & ".join(render_cell(c, TEX) for c in row) + r" \\" for row in t.rows]
    lines += [r"\bottomrule", r"\end{tabular}"]
    if t.note:
        lines += [r"\par\smallskip\footnotesize " + tex_escape("Note: " + t.note.replace("`", ""))]
    return "\n".join(lines + [r"\end{table}"])


def table_html(t: Table) -> str:
    head = ""
    if t.groups:
        lead = len(t.header) - sum(n for _, n in t.groups)
        head = "<tr>" + "<th></th>" * lead + "".join(f'<th colspan="{n}">{html.escape(g)}</th>' for g, n in t.groups)
        head += "</tr>\n"
    head += "<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in t.header) + "</tr>"
    body = "\n".join("<tr>" + "".join(f"<td>{render_cell(c, HTML)}</td>" for c in row) + "</tr>" for row in t.rows)
    note = f'\n<p class="note">Note: {_md_inline(t.note)}</p>' if t.note else ""
    return (f'<h3>{html.escape(t.title)}</h3>\n<table id="{t.key}">\n<thead>\n{head}\n</thead>\n'
            f"<tbody>\n{body}\n</tbody>\n</table>{note}")


def _sections(board: Board) -> list[tuple[str, list[Table]]]:
    return [(s, [t for t in board.tables if t.section == s]) for s in SECTIONS
            if any(t.section == s for t in board.tables)]


def render_markdown(board: Board) -> str:
    parts = ["# MENTOR leaderboard", "", *board.intro]
    for section, tables in _sections(board):
        parts += ["", f"## {section}", *("\n" + table_md(t) for t in tables)]
    if board.plots:
        link = str.maketrans({"[": "\\[", "]": "\\]"})  # a bracket in a caption would end the image's alt text
        parts += ["", "## Plots", ""] + [f"![{md_escape(p.title).translate(link)}]({p.path})" for p in board.plots]
    if board.notes:
        parts += ["", "## Notes", ""] + [f"- {MD.esc(n)}" for n in board.notes]
    return "\n".join(parts) + "\n"


def render_tex(board: Board) -> str:
    head = ["% MENTOR leaderboard (python -m mentor_ray.leaderboard); needs \\usepackage{booktabs}\n"
            + "\n".join(f"% {tex_comment(line)}" for line in board.intro)]
    notes = [f"% note: {tex_comment(n)}" for n in board.notes]
    return "\n\n".join(head + [table_tex(t) for t in board.tables]) + "\n" + "\n".join(notes) + "\n"


def render_html(board: Board) -> str:
    css = ("body{font-family:sans-serif;margin:2em;max-width:90em}table{border-collapse:collapse;margin:1em 0}"
           "th,td{border-bottom:1px solid #ccc;padding:.25em .6em;text-align:right}"
           "th:first-child,td:first-child{text-align:left}figure{display:inline-block;margin:1em}")
    intro = "".join(f"<p>{_md_inline(p)}</p>\n" for p in board.intro)
    parts = [f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>MENTOR leaderboard</title>"
             f"<style>{css}</style></head>\n<body>\n<h1>MENTOR leaderboard</h1>\n{intro}"]
    for section, tables in _sections(board):
        parts.append(f"<h2>{html.escape(section)}</h2>\n" + "\n".join(table_html(t) for t in tables))
    if board.plots:
        figs = (f'<figure><img src="{html.escape(p.path)}" alt="{html.escape(p.title)}">'
                f"<figcaption>{html.escape(p.title)}</figcaption></figure>" for p in board.plots)
        parts.append("<h2>Plots</h2>\n" + "\n".join(figs))
    if board.notes:
        items = "\n".join(f"<li>{html.escape(n)}</li>" for n in board.notes)
        parts.append(f"<h2>Notes</h2>\n<ul>\n{items}\n</ul>")
    return "\n".join(parts) + "\n</body></html>\n"


def _md_inline(text: str) -> str:
    """The intro's Markdown (`code`, **bold**, <u>underline</u>) as HTML."""
    out = html.escape(text).replace("&lt;u&gt;", "<u>").replace("&lt;/u&gt;", "</u>")
    out = re.sub(r"`([^`]+)`", r"<code>\1</code>", out)
    return re.sub(r"\*\*([^*]+)\*\*", r"<b>\1</b>", out)
