"""Every markdown table the project writes is well formed: each row has the header's number
of cells, as a markdown parser (markdown-it-py, GFM tables) splits them. `dnas genotype table`
with DARTS and NB201 cells (whose strings hold `|`), `dnas report` with a group named after an
NB201 string; `dvc exp show --md` of the default is checked in tests/test_readme.py."""

import html

from markdown_it import MarkdownIt

from dnas.genotype_table import Row, markdown
from dnas.report import build_rows, group_runs, parse_exp_show
from dnas.report import markdown as report_markdown
from dnas.spaces.genotype import Genotype
from dnas.spaces.published import resolve_genotype

NB201 = (
    "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"
)


def _parser() -> MarkdownIt:
    return MarkdownIt("commonmark").enable("table")


def assert_tables_well_formed(text: str) -> int:
    """Check every table of `text`; return how many there are. GFM fills short rows and drops
    the excess cells of long ones, so a row is checked on its own: as the header of a table
    with the header's column count, which the parser recognises only if the counts agree."""
    md = _parser()
    tokens = md.parse(text)
    lines = text.splitlines()
    tables = 0
    for i, tok in enumerate(tokens):
        if tok.type != "table_open":
            continue
        tables += 1
        head = []
        j = i + 1
        while tokens[j].type != "thead_close":
            if tokens[j].type == "th_open":
                head.append(tokens[j])
            j += 1
        n = len(head)
        rows = []
        while tokens[j].type != "table_close":
            if tokens[j].type == "tr_open" and tokens[j].map:
                rows.append(lines[tokens[j].map[0]])
            j += 1
        for row in rows:
            probe = md.parse(f"{row}\n|{'---|' * n}\n")
            assert any(t.type == "table_open" for t in probe), (
                f"a row does not have the header's {n} cells:\n{row}"
            )
    return tables


def test_the_check_sees_a_broken_row():
    good = "| a | b |\n|---|---|\n| 1 | x \\| y |\n"
    assert assert_tables_well_formed(good) == 1
    bad = "| a | b |\n|---|---|\n| 1 | x | y |\n"
    try:
        assert_tables_well_formed(bad)
    except AssertionError as exc:
        assert "2 cells" in str(exc)
    else:
        raise AssertionError("a 3-cell row under a 2-column header passed")


def test_genotype_table_is_well_formed_with_darts_and_nb201_cells():
    rows = [
        Row("darts-exp", "a" * 40, resolve_genotype("GDAS_V1", None),
            {"search valid %": 58.4, "test top-1 %": 99.4}),
        Row("nb201-exp", "b" * 40, resolve_genotype(NB201, None),
            {"search valid %": 50.0, "test top-1 %": 98.0}),
        Row("x|y", "c" * 40, None, {"search valid %": None, "test top-1 %": None}),
    ]  # fmt: skip
    text = markdown(rows)
    assert assert_tables_well_formed(text) == 1
    rendered = _parser().render(text)
    for row in rows[:2]:  # each cell's nodes, whole, in one cell (`|` between the nodes)
        for brief in Genotype.brief(row.genotype).values():
            assert "|" in brief and f"<td>{html.escape(brief)}</td>" in rendered
    assert "<td>x|y</td>" in rendered


def test_report_is_well_formed_with_an_nb201_string_in_a_label():
    def rev(i, genotype, seed, acc):
        params = {"common": {"seed": seed}, "train": {"genotype": genotype, "lr": 0.1}}
        return {"rev": f"{i:040d}", "name": f"e{i}", "error": None, "data": {
            "params": {"params.yaml": {"data": params}},
            "metrics": {"metrics/train.json": {"data": {"test_acc": acc}}}}}  # fmt: skip

    exps = [rev(1, NB201, 0, 90.0), rev(2, NB201, 1, 91.0), rev(3, "searched", 0, 92.0)]
    rows = [{"rev": "b" * 40, "name": "main", "error": None, "data": {},
             "experiments": [{"name": e["name"], "revs": [e]} for e in exps]}]  # fmt: skip
    runs = parse_exp_show(rows)
    text = report_markdown(build_rows(group_runs(runs, {}), {}))
    assert assert_tables_well_formed(text) == 1
    assert NB201.replace("|", "\\|") in text
