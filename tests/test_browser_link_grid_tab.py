"""Tab into a grid whose rows are links (Errors, Comparison: `sde-link-grid`), in headless Chromium
against the real CLI (`sde demo`): it lands on the row the user was last on in that grid, else its
first row, where ↑/↓ and Enter work (it landed on the first column header: one more key, ↓, to reach
a row), and the next Tab leaves the grid for the page's next control (not cell by cell).
"""

from __future__ import annotations

import pytest

from tests.browser_kit import Watch

pytestmark = pytest.mark.browser

FOCUSED = """(() => { const e = document.activeElement, row = e.closest('.ag-row');
    return {grid: (e.closest('.sde-grid') || {}).id || null,
            row: row ? +row.getAttribute('row-index') : null, cell: e.classList.contains('ag-cell')}; })()"""


def focused(page) -> dict:
    """Where the focus is: the grid (None: outside every grid), the row index, whether a cell."""
    return page.evaluate(FOCUSED)


def wait_rows(page, grid: str, rows: int = 3) -> None:
    """Until the grid shows `rows` rows with their data."""
    page.wait_for_selector(f"#{grid} .ag-row")
    page.wait_for_function("""([g, n]) => { const api = window.dash_ag_grid && dash_ag_grid.getApi(g);
        if (!api || api.getDisplayedRowCount() < n) return false;
        const node = api.getDisplayedRowAtIndex(n - 1); return !!(node && node.data); }""", arg=[grid, rows])


# (page, grid, the control before it, the control after it, the row walked to before (None: a
# fresh grid), the row Tab lands on)
TAB_INTO = [
    ("/errors?hyp=pred_text", "errors-sub-grid", "#errors-sub-manifest", "#errors-del-csv", None, 0),
    ("/errors?hyp=pred_text", "errors-sub-grid", "#errors-sub-manifest", "#errors-del-csv", 21, 21),
    ("/comparison", "cmp-word-grid", "#cmp-word-links a[download]", "#cmp-metric input:checked", None, 0),
    ("/comparison", "cmp-word-grid", "#cmp-word-links a[download]", "#cmp-metric input:checked", 2, 2),
]


@pytest.mark.parametrize("path,grid,before,after,walked,lands", TAB_INTO, ids=[
    "errors-first-row-of-a-fresh-grid", "errors-the-row-left-scrolled-back-into-view",
    "comparison-first-row-of-a-fresh-grid", "comparison-the-row-left"])
def test_tab_into_a_link_grid_lands_on_its_row_and_the_next_tab_leaves(page, demo, path, grid, before, after,
                                                                       walked, lands):
    watch = Watch(page, demo)
    page.goto(demo + path)
    wait_rows(page, grid)
    if walked is not None:
        page.focus(f"#{grid} .ag-header-cell[aria-colindex='1']")
        for _ in range(walked + 1):
            page.keyboard.press("ArrowDown")
        assert focused(page)["row"] == walked
        page.keyboard.press("Tab")
        assert focused(page)["grid"] is None
        page.evaluate("(g) => dash_ag_grid.getApi(g).ensureIndexVisible(0, 'top')", grid)
    page.focus(before)
    page.keyboard.press("Tab")
    page.wait_for_function("(g) => !!document.activeElement.closest('#' + g + ' .ag-cell')", arg=grid)
    assert focused(page) == {"grid": grid, "row": lands, "cell": True}
    page.keyboard.press("ArrowDown")                     # the keys of the grid go on from there
    assert focused(page)["row"] == lands + 1
    page.keyboard.press("Tab")
    assert focused(page)["grid"] is None
    assert page.evaluate("(s) => document.activeElement === document.querySelector(s)", after)
    watch.check()
