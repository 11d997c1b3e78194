"""The one renderer (mentor_ray/report/render.py): typed columns rendered by the same rules as Markdown, LaTeX,
HTML and plain text; TeX that is ASCII and compiles; wide tables split to fit a page and a 1,400 px window.

The TeX compile runs where ``pdflatex`` is on PATH, the browser check where ``chromium`` is (skipped otherwise).
"""

from __future__ import annotations

import math
import re
import shutil
import subprocess

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from mentor_ray.report import board, render, select
from mentor_ray.report import leaderboard as lb
from mentor_ray.report.board import Cell, Column, Percent, Table
from tests.test_bench import sample_blocks
from tests.test_leaderboard import _record, _search_grid, _summary, _table2_store

NUM, TXT = Column("Time (s)", "number", 2), Column("Model")


def _sample() -> Table:
    """One column of every kind; marks, a star, a note, missing values."""
    columns = [TXT, Column("R@20", "metric", 4), NUM, Column("Share", "percent", 1), Column("Wall", "duration"),
               Column("CI", "interval", 4), Column("p", "pvalue", 3), Column("Points", "fraction"),
               Column("Error", "sci", 1)]
    rows = [["MENTOR_fg", Cell(0.0521, 0.002, mark=1, star=True), 1.5, 37.5, 300.0, (-0.001, 0.012), 0.0004, (3, 6),
             1.2e-7],
            ["LightGCN", Cell(0.041, 0.001, mark=2), 12.345, 100.0, 59.94, None, 0.5, (8, 8), None],
            ["MostPop", Cell(None), None, 0.001, 4000.0, None, None, None, 3e-5],
            ["Improv.", Percent(26.83), "n/a", 0.0, None, None, None, None, None]]
    return Table.of("sample", "A sample: every kind", columns, rows, note="`code` and more")


# --------------------------------------------------------------------------- alignment, decimals, percentages


def test_alignment_follows_the_column_kind_in_every_format():
    t = _sample()
    right = [c.right for c in t.columns]
    assert right == [False] + [True] * 8
    md = render.table_md(t).splitlines()
    assert md[3] == "|:---|" + "---:|" * 8  # the alignment row
    tex = render.table_tex(t)
    specs = re.findall(r"\\begin\{tabular\}\{([^}]*)\}", tex)
    assert specs and all(s[0] == "l" and set(s[1:]) == {"r"} for s in specs), specs
    page = render.table_html(t)
    for row in re.findall(r"<tr>(.*?)</tr>", page, re.S):
        classes = re.findall(r'<td class="data row\d+ col\d+ (\w+)', row)
        if classes:
            assert classes == ["text"] + ["num"] * (len(classes) - 1)
    for j in range(1, len(t.columns)):  # a number's header aligned as its column
        assert f"th.col_heading.level0.col{j} {{\n  text-align: right;" in page
    assert "th.col_heading.level0.col0 {" not in page
    lines = render.table_text(t).splitlines()
    rule = next(i for i, line in enumerate(lines) if line.startswith("---"))
    spans = [m.span() for m in re.finditer(r"-+", lines[rule])]
    for line in lines[rule + 1:rule + 5]:
        for (a, b), col in zip(spans, t.columns):
            cell = re.sub(r"( \(\d\)| {4})$", "", line[a:b]) if col.kind == "metric" else line[a:b]  # rank slot
            assert cell.strip() and (cell[-1] != " " if col.right else cell[0] != " "), (col.header, line)


@settings(max_examples=200, deadline=None)
@given(value=st.floats(-1e9, 1e9, allow_nan=False), decimals=st.integers(0, 6))
@example(value=-0.0001, decimals=2)
def test_numbers_have_fixed_decimals_and_no_negative_zero(value, decimals):
    col = Column("x", "number", decimals)
    for fmt in render.FORMATS:
        text = render.format_cell(value, col, fmt).replace("$-$", "-")
        assert re.fullmatch(rf"-?\d+(\.\d{{{decimals}}})?" if decimals else r"-?\d+", text), text
        assert abs(float(text) - value) <= 0.5 * 10 ** -decimals * (1 + 1e-9) + abs(value) * 1e-15
        assert text != "-" + "0" * len(text[1:]) and not re.fullmatch(r"-0\.0*", text)


@settings(max_examples=200, deadline=None)
@given(value=st.floats(0, 1e6, allow_nan=False), decimals=st.integers(0, 3))
@example(value=100.0, decimals=1)
@example(value=1e-9, decimals=1)
def test_percentages_are_percentages(value, decimals):
    text = render.format_cell(value, Column("x", "percent", decimals), "md")
    assert text.endswith("%") and "e" not in text
    if 0 < value < 0.5 * 10 ** -decimals:
        assert text == f"<{10 ** -decimals:.{decimals}f}%"
    else:
        assert math.isclose(float(text[:-1]), value, abs_tol=0.5 * 10 ** -decimals + 1e-9)
        assert re.fullmatch(rf"\d+(\.\d{{{decimals}}})?%", text)
    assert render.format_cell(value, Column("x", "percent", decimals), "tex").endswith(r"\%")


def test_coverage_is_a_fraction_and_a_percentage_in_every_format():
    """`8 / 8 (1e+02%)` once: the points and the share are now their own typed columns."""
    points, share = Column("Points", "fraction"), Column("Coverage", "percent", 1)
    for fmt in render.FORMATS:
        assert render.format_cell((8, 8), points, fmt) == "8 / 8"
        assert render.format_cell(100.0, share, fmt) in ("100.0%", r"100.0\%")
        assert render.format_cell((1234, 5000), points, fmt) == "1,234 / 5,000"


# --------------------------------------------------------------------------- marks, star, missing values


def test_best_second_and_star_in_each_formats_own_way():
    best, second = Cell(0.0521, 0.002, mark=1, star=True), Cell(0.041, 0.001, mark=2)
    metric = Column("R@20", "metric", 4)
    assert render.format_cell(best, metric, "md") == "**0.0521**\\* ± 0.0020"
    assert render.format_cell(second, metric, "md") == "_0.0410_ ± 0.0010"
    assert render.format_cell(best, metric, "tex") == r"\textbf{0.0521}$^{*}$ $\pm$ 0.0020"
    assert render.format_cell(second, metric, "tex") == r"\underline{0.0410} $\pm$ 0.0010"
    assert render.format_cell(best, metric, "html") == "<b>0.0521</b><sup>*</sup> ± 0.0020"
    assert render.format_cell(second, metric, "html") == "<u>0.0410</u> ± 0.0010"
    assert render.format_cell(best, metric, "text", True, True) == "0.0521* ± 0.0020 (1)"
    assert render.format_cell(second, metric, "text", True, True) == "0.0410  ± 0.0010 (2)"
    assert render.format_cell(Cell(-0.01), metric, "tex") == "$-$0.0100"  # a math minus, never a hyphen


def test_plain_text_has_no_markup_and_a_legend():
    t = _sample()
    text = render.table_text(t)
    for markup in ("**", "<u>", "<b>", "<sup>", "\\", "`", "|"):
        assert markup not in text, markup
    assert "0.0521* ± 0.0020 (1)" in text and "0.0410  ± 0.0010 (2)" in text
    assert "(1) best, (2) second in its column; * significant" in text
    assert render.text_escape("<script>alert(1)</script>\x1b[31m") == "‹script>alert(1)‹/script>?[31m"
    assert render.text_escape("<= 0.6 s") == "<= 0.6 s"


def test_markdown_escapes_store_text_but_keeps_comparisons():
    assert render.md_escape("<script>a|b</script>") == "&lt;script>a\\|b&lt;/script>"
    assert render.md_escape("<= 0.6 s and\n<= 2 GB") == "<= 0.6 s and <= 2 GB"


# --------------------------------------------------------------------------- TeX: ASCII, braces, compiles, fits


def _ascii_and_balanced(tex: str) -> None:
    bad = sorted({c for c in tex if not (" " <= c <= "~" or c == "\n")})
    assert not bad, f"non-ASCII or control characters in TeX: {bad!r}"
    depth = 0
    for line in tex.splitlines():
        code = re.split(r"(?<!\\)%", line)[0].replace("\\\\", "").replace(r"\{", "").replace(r"\}", "")
        for ch in code:
            depth += {"{": 1, "}": -1}.get(ch, 0)
            assert depth >= 0, line
    assert depth == 0


@pytest.fixture(scope="module")
def leaderboard_tex(tmp_path_factory):
    """The leaderboard's TeX of a store with text no TeX file may hold raw: a minus, accents, CJK, TeX."""
    root = tmp_path_factory.mktemp("store")
    _table2_store(root)
    _table2_store(root, dataset="synth-b")
    _search_grid(root)
    axes = {"dropout": [0.3, 0.5], "tau": [0.2, 0.5, 0.8]}
    for dropout, tau in [(0.3, 0.2), (0.5, 0.5)]:
        _record(root, {**_summary(dropout=dropout, tau=tau, wall=60.0), "space_axes": axes, "budget_epochs": 13},
                "search", sweep="café – 中文 −1 ± $x^{$ \\input{/etc/passwd}")
    _record(root, _summary("synth-c", "mentor", device="cuda:0", gpu=1234.0, world_size=2))
    out = tmp_path_factory.mktemp("board")
    lb.write_leaderboard(root, out, "tex,html")
    return (out / "leaderboard.tex").read_text(), (out / "leaderboard.html").read_text(), root


def _bench_tex() -> str:
    return "\n\n".join(render.table_tex(t) for b in sample_blocks().values() for t in b.tables())


def test_tex_is_ascii_with_balanced_braces(leaderboard_tex):
    tex, _, _ = leaderboard_tex
    for text in (tex, _bench_tex(), render.table_tex(_sample())):
        _ascii_and_balanced(text)
    assert r"MENTOR $-$ baseline" in tex and r"caf\'{e} -- ?? $-$1 $\pm$ \$x\textasciicircum{}\{\$" in tex
    assert r"\input{/etc" not in tex.replace(r"\textbackslash{}input", "")
    assert render.tex_escape("naïve Ø λ 😀") == r'na\"{\i}ve \O{} $\lambda$ ?'
    with pytest.raises(AssertionError):  # the check can fail
        _ascii_and_balanced("caf\u00e9 {")


def test_every_tex_table_fits_a_page(leaderboard_tex):
    """At most 10 columns and about 100 characters (a 6.5 in line at \\small) a table: the sweep's 18 columns
    are three tables, Table 2 one dataset a table, and any part still too wide is split again."""
    tex, _, root = leaderboard_tex
    for spec in re.findall(r"\\begin\{tabular\}\{([^}]*)\}", tex + _bench_tex()):
        assert len(re.findall(r"[lr]|p\{[^}]*\}", spec)) <= render.TEX_COLUMNS, spec
    tables = lb.build_board(select.load_runs(root), str(root)).tables
    sweeps = [t for t in tables if t.section == board.SECTIONS[3]]
    assert [t.key for t in sweeps] == ["sweep", "sweep_spend", "sweep_time"]
    assert sum(len(t.columns) for t in sweeps) == 18 + 2 * 2 + 1  # the keys repeat; points and share split
    for t in tables + [t for b in sample_blocks().values() for t in b.tables()]:
        for cols in render.parts(t, render.TEX_CHARS, render.TEX_COLUMNS):
            part = t.select(cols)
            units = len({c.group or i for i, c in enumerate(part.columns[t.keys:])})
            if units > 1:  # a single group or column wider than the line is scaled down instead
                assert sum(w + 3 for w in render.widths(part)) <= render.TEX_CHARS, (t.key, cols)


def _pdflatex(tmp_path, tex: str, scale: bool) -> str:
    """Compile ``tex`` in a 6.5 in wide article; ``scale`` off: \\resizebox shows its content as it is."""
    body = (r"\documentclass{article}\usepackage{booktabs,graphicx}"
            r"\setlength{\textwidth}{6.5in}\setlength{\oddsidemargin}{0in}\setlength{\evensidemargin}{0in}"
            + ("" if scale else r"\renewcommand{\resizebox}[3]{#3}") + "\n\\begin{document}\n" + tex
            + "\n\\end{document}\n")
    (tmp_path / "doc.tex").write_text(body)
    proc = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "-no-shell-escape", "doc.tex"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=180)
    log = (tmp_path / "doc.log").read_text(errors="replace")
    assert proc.returncode == 0, log[-3000:]
    return log


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex is not on PATH (TeX Live not installed)")
def test_the_tex_compiles_and_fits_the_line_unscaled(leaderboard_tex, tmp_path):
    tex, _, _ = leaderboard_tex
    for i, doc in enumerate([tex, _bench_tex()]):
        (tmp_path / str(i)).mkdir()
        log = _pdflatex(tmp_path / str(i), doc, scale=False)
        assert "Overfull \\hbox" not in log, re.findall(r"Overfull \\hbox.*", log)
        assert "Output written on doc.pdf" in log
    (tmp_path / "wide").mkdir()  # and the check can fail: one 18-column table, unscaled, overflows the line
    wide = Table.of("wide", "wide", [Column(f"c{i}", "number", 4) for i in range(18)], [[0.1234] * 18])
    assert "Overfull \\hbox" in _pdflatex(tmp_path / "wide", render._tex_part(wide), scale=False)  # one part


# --------------------------------------------------------------------------- HTML


def _page_width(html: str, tmp_path) -> tuple[int, int]:
    """(the page's scroll width, tables wider than their box) in a 1,400 px wide headless Chromium."""
    js = ("<script>document.body.setAttribute('data-w', document.documentElement.scrollWidth);"
          "document.body.setAttribute('data-over', [...document.querySelectorAll('div.table')]"
          ".filter(d => d.scrollWidth > d.clientWidth + 1).length);</script>")
    page = tmp_path / "page.html"
    page.write_text(html.replace("</body>", js + "</body>"))
    proc = subprocess.run([shutil.which("chromium"), "--headless", "--no-sandbox", "--disable-gpu",
                           "--disable-background-networking", "--disable-component-update", "--disable-sync",
                           "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1400,2400",
                           "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120)
    found = re.search(r'data-w="(\d+)" data-over="(\d+)"', proc.stdout)
    assert found, proc.stderr[-2000:]
    return int(found[1]), int(found[2])


def test_html_tables_are_split_and_text_columns_wrap(leaderboard_tex):
    _, page, _ = leaderboard_tex
    assert 'id="T_overall"' in page and 'id="T_overall-2"' in page  # Table 2: one part per dataset here
    assert re.search(r'class="data row0 col\d+ text wrap"', page)  # the sweep's Best config wraps
    assert "td.wrap{white-space:normal" in page and "td.num{text-align:right;white-space:nowrap" in page


@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium is not on PATH")
def test_the_html_fits_1400_px(leaderboard_tex, tmp_path, monkeypatch):
    _, page, root = leaderboard_tex
    width, over = _page_width(page, tmp_path)
    assert width <= 1400 and over == 0, (width, over)
    monkeypatch.setattr(render, "HTML_CHARS", 10_000)  # no split: Table 2 of two datasets is wider than the box
    built = lb.build_board(select.load_runs(root), str(root))
    assert _page_width(render.render_html(built), tmp_path)[1] > 0


# --------------------------------------------------------------------------- the board


def test_the_board_in_plain_text_has_no_markup(leaderboard_tex):
    _, _, root = leaderboard_tex
    built = lb.build_board(select.load_runs(root), str(root))
    text = render.render_text(built)
    for markup in ("<u>", "<b>", "**", "\\*", "\\|", "|:---", "<script", "`"):
        assert markup not in text, markup
    assert text.startswith("# MENTOR leaderboard") and "Per column: best marked (1), second (2)" in text
    md = render.render_markdown(built)
    assert "Per column: best **bold**, second _italic_" in md and "<u>" not in md
