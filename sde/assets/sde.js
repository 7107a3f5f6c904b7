/* sde in the browser: the inspector's listening loop and keys, and the table pages' way back.

   Inspector keys (never while typing in a field):
     j or →  next utterance of the list          k or ←  previous          u  back to the list
     Space   play / pause
     ← / →   seek 2 s back / ahead while the player has the focus (click it, or Tab to it);
             on a focused radio group or slider they move its selection, as usual
   The buttons are dcc.Link anchors, so "clicking" them navigates client-side like a mouse click.
   Dash re-creates the page's components on every navigation, so bindings are checked on a short
   timer (cheap: a few lookups) rather than once. */
(function () {
  var SEEK_S = 2;

  var CLICKABLE_INPUTS = /^(checkbox|radio|button|submit|reset|range)$/i;

  function typing(el) {
    // A text box keeps its keys; a switch (the autoplay checkbox) does not capture j/k.
    if (!el) return false;
    var tag = (el.tagName || "").toLowerCase();
    if (tag === "input") return !CLICKABLE_INPUTS.test(el.type || "");
    return tag === "textarea" || tag === "select" || el.isContentEditable;
  }

  function activates(el) {
    // Space on a button, a link or a switch is theirs: it presses them.
    var tag = (el && el.tagName || "").toLowerCase();
    return tag === "button" || tag === "a" || (tag === "input" && CLICKABLE_INPUTS.test(el.type || "")) ||
      (el && el.getAttribute && el.getAttribute("role") === "button");
  }

  function movesWithArrows(el) {
    // A focused radio group (linear / mel) or slider moves its own selection with ← / →.
    var tag = (el && el.tagName || "").toLowerCase();
    return tag === "input" && /^(radio|range)$/i.test(el.type || "");
  }

  function player() { return document.getElementById("utt-audio"); }

  function play(audio) {
    var p = audio.play();
    if (p && p.catch) p.catch(function () { /* no user gesture yet, or no audio: the page says why */ });
  }

  function toggle(audio) {
    if (audio.paused || audio.ended) play(audio); else audio.pause();
  }

  function follow(id) {
    var el = document.getElementById(id);
    if (!el || el.tagName !== "A") return false;
    el.click();
    return true;
  }

  /* Keys pressed while the next utterance loads. The link moves the URL at once, but the page
     shows the old utterance's links until its callback answers, so a second j followed the same
     link again and went nowhere (8 quick presses moved 4). Such presses are owed (j +1, k -1) and
     followed one by one as each page catches up; u, or a page that never comes, drops them. */
  var OWED_FOR_MS = 10000;
  var owed = 0;
  var owedAt = 0;

  function linkHere(id) {
    // whether the link points where the browser already is: its page has not come yet
    var el = document.getElementById(id);
    if (!el || el.tagName !== "A" || !el.href) return false;
    var to = new URL(el.href, location.href);
    return to.pathname === location.pathname && to.search === location.search;
  }

  function loading() { return linkHere("utt-next") || linkHere("utt-prev"); }

  function owe(step) {
    owed += step;
    owedAt = Date.now();
  }

  function payOwed() {
    if (!owed) return;
    if (Date.now() - owedAt > OWED_FOR_MS) { owed = 0; return; }
    if (loading()) return;
    var step = owed > 0 ? 1 : -1;
    if (follow(step > 0 ? "utt-next" : "utt-prev")) owed -= step;
    else owed = 0;  // the end of the list
  }
  setInterval(payOwed, 40);

  document.addEventListener("keydown", function (ev) {
    if (ev.defaultPrevented || ev.altKey || ev.ctrlKey || ev.metaKey || typing(ev.target)) return;
    var audio = player();
    var onPlayer = audio && ev.target === audio;
    if (ev.key === " " || ev.key === "Spacebar") {
      // The focused player toggles itself (its controls act on the key whatever we do); a focused
      // button, link or switch is pressed by it.
      if (!audio || onPlayer || activates(ev.target)) return;
      ev.preventDefault();  // no page scroll
      toggle(audio);
      return;
    }
    if (onPlayer && (ev.key === "ArrowLeft" || ev.key === "ArrowRight")) {
      ev.preventDefault();
      var t = audio.currentTime + (ev.key === "ArrowRight" ? SEEK_S : -SEEK_S);
      audio.currentTime = Math.max(0, isFinite(audio.duration) ? Math.min(t, audio.duration) : t);
      return;
    }
    if ((ev.key === "ArrowLeft" || ev.key === "ArrowRight") && movesWithArrows(ev.target)) return;
    var target = null;
    if (ev.key === "ArrowRight" || ev.key === "j") target = "utt-next";
    else if (ev.key === "ArrowLeft" || ev.key === "k") target = "utt-prev";
    else if (ev.key === "u") target = "utt-back";
    if (!target) return;
    if (target === "utt-back") owed = 0;
    else if (owed || loading()) {
      if (document.getElementById(target)) {
        owe(target === "utt-next" ? 1 : -1);
        ev.preventDefault();
      }
      return;
    }
    if (follow(target)) ev.preventDefault();
  });

  /* Waveform <-> player: a click on the waveform or spectrogram plays from that time, and a
     vertical line on both plots follows the player's position. Autoplay (the inspector's
     switch, kept by Dash in sessionStorage): each utterance plays as it opens. */
  var PLAYHEAD = {type: "line", xref: "x", yref: "paper", x0: 0, x1: 0, y0: 0, y1: 1,
                  line: {color: "#e74c3c", width: 2}};

  function autoplayOn() {
    var sw = document.getElementById("utt-autoplay");
    return !!(sw && sw.checked);
  }

  function bindPlayer(audio) {
    if (audio.__sdeSeen) return;
    audio.__sdeSeen = true;
    if (autoplayOn()) play(audio);
  }

  function bindPlot(holder, audio) {
    var plot = holder.querySelector(".js-plotly-plot");
    if (!plot || !plot.on) return;
    if (plot.__sdeBound !== audio) {
      plot.__sdeBound = audio;
      plot.on("plotly_click", function (ev) {
        if (!ev || !ev.points || !ev.points.length) return;
        var t = Number(ev.points[0].x);
        if (!isFinite(t)) return;
        var a = plot.__sdeBound;
        a.currentTime = Math.max(0, t);
        play(a);
      });
    }
    if (audio.__sdeBound !== plot) {
      audio.__sdeBound = plot;
      var last = -1;
      audio.addEventListener("timeupdate", function () {
        var p = audio.__sdeBound;
        if (!p || !document.body.contains(p)) return;
        var t = audio.currentTime;
        if (Math.abs(t - last) < 0.02) return;
        last = t;
        var line = Object.assign({}, PLAYHEAD, {x0: t, x1: t});
        window.Plotly.relayout(p, {shapes: [line]});
        p.setAttribute("data-playhead", t.toFixed(3));
      });
    }
  }

  function bind() {
    var audio = player();
    if (!audio) return;
    bindPlayer(audio);
    var holder = document.getElementById("utt-signal");
    if (holder && window.Plotly) bindPlot(holder, audio);
  }
  setInterval(bind, 150);
})();

/* Table pages (Samples, Vocabulary): the way back to a row. A click on a row remembers its place
   in sessionStorage; when the page's first block of rows arrives (sde.web.pages.table FOCUS_JS),
   the remembered row when the URL is the one it was clicked on (the browser's back button), else
   the row the URL's focus=ID names (the inspector's "back to list"), is scrolled into view and
   selected. */
(function () {
  function key() { return "sde.return:" + window.location.pathname; }

  document.addEventListener("click", function (ev) {
    var row = ev.target && ev.target.closest ? ev.target.closest(".table-page .ag-row[row-index]") : null;
    if (!row) return;
    try {
      window.sessionStorage.setItem(key(), JSON.stringify(
        {search: window.location.search, index: Number(row.getAttribute("row-index"))}));
    } catch (e) { /* storage full or disabled: no way back, nothing else lost */ }
  }, true);

  function remembered() {
    // Kept after it is read (a click on another row replaces it): Back, Forward and Back again
    // returns to the same URL, which must find its row again.
    var saved = null;
    try {
      saved = JSON.parse(window.sessionStorage.getItem(key()) || "null");
    } catch (e) { saved = null; }
    return saved && saved.search === window.location.search ? saved : null;
  }

  window.sdeFocusRow = function (gridId, focus) {
    // The row clicked on this very URL is the newer fact (the back button returns to a URL that
    // may still name an older focus=ID).
    var saved = remembered();
    var f = saved || focus;
    if (!f || typeof f.index !== "number" || f.index < 0 || !window.dash_ag_grid) return;
    window.dash_ag_grid.getApiAsync(gridId).then(function (api) {
      var tries = 0;
      (function step() {
        // The grid learns the row count from its first block: wait for it, then for the block
        // that holds the row (an infinite grid loads it once the row is scrolled into view).
        if (api.getDisplayedRowCount() > f.index) {
          api.ensureIndexVisible(f.index, "middle");
          var node = api.getDisplayedRowAtIndex(f.index);
          if (node && node.data) {
            node.setSelected(true, true);
            // the row the user was last on: Tab into the grid lands on it (the link grids' code below)
            var holder = document.getElementById(gridId);
            if (holder) holder.__sdeRow = f.index;
            return;
          }
        }
        if (++tries < 200) window.setTimeout(step, 50);
      })();
    });
  };
})();

/* A link the Samples page rewrites as it arrives (the Errors page's `/samples?error=sub:a:b&hyp=F`,
   shown as the filter `{error} = "sub a b"`) replaces its history entry instead of adding one:
   otherwise Back returned to the link, which rewrote itself again, and the user could never get
   back to Errors with the browser's Back button. */
(function () {
  var push = window.history.pushState.bind(window.history);
  window.history.pushState = function (data, title, url) {
    try {
      var now = new URL(window.location.href), next = new URL(url, now);
      if (now.pathname === next.pathname && now.searchParams.has("error") && !next.searchParams.has("error")) {
        return window.history.replaceState(data, title, url);
      }
    } catch (e) { /* not a URL we know: push it as asked */ }
    return push(data, title, url);
  };
})();

/* The grids whose rows are links (Samples, Vocabulary, Errors, Comparison, the breakdowns:
   `sde-link-grid`) for the
   keyboard. Their cells take the focus, so the arrow keys walk the rows (↓ from a header cell enters
   the body) and Enter opens the focused row, as a click on it does. Tab and Shift+Tab leave the
   grid, to the next (previous) element of the page: AG Grid's own Tab walks every cell of every row,
   and from the last header cell of a grid without focusable cells wrapped back to its first, a trap
   for the keyboard. A grid whose cells take no focus still leaves from its last header cell.
   Tab and Shift+Tab into a link grid land on the row the user was last on in it, else its first row,
   where the arrow keys and Enter work: AG Grid's tab guards sent Tab to the first header cell (one
   more key, ↓, to reach a row) and Shift+Tab to the last rendered cell, away from both. The header
   is still there for sorting: ↑ from the first row. */
(function () {
  var FOCUSABLE = 'a[href], button:not([disabled]), input:not([disabled]):not([type="hidden"]), ' +
    'select:not([disabled]), textarea:not([disabled]), audio[controls], video[controls], [tabindex]';

  function visible(el) {
    return !!(el.offsetWidth || el.offsetHeight || el.getClientRects().length);
  }

  function outside(grid, backwards) {
    // The first focusable element after the grid (after the page's last grid, the page's first, as
    // Tab cycles); backwards, the last one before it (before the page's first, the page's last).
    var all = document.querySelectorAll(FOCUSABLE), before = [], after = [];
    for (var j = 0; j < all.length; j++) {
      var el = all[j];
      if (grid.contains(el) || el.tabIndex < 0 || !visible(el)) continue;
      (grid.compareDocumentPosition(el) & Node.DOCUMENT_POSITION_FOLLOWING ? after : before).push(el);
    }
    var order = before.concat(after);
    if (!order.length) return null;
    return backwards ? (before.length ? before[before.length - 1] : order[order.length - 1])
                     : (after.length ? after[0] : order[0]);
  }

  function lastHeader(cell, grid) {
    var cells = grid.querySelectorAll(".ag-header-row-column .ag-header-cell[aria-colindex]");
    var last = 0;
    for (var i = 0; i < cells.length; i++) last = Math.max(last, +cells[i].getAttribute("aria-colindex"));
    return +cell.getAttribute("aria-colindex") === last;
  }

  document.addEventListener("keydown", function (e) {
    if (e.altKey || e.ctrlKey || e.metaKey || !e.target || !e.target.closest) return;
    var grid = e.target.closest(".ag-root-wrapper");
    if (!grid) return;
    var links = !!e.target.closest(".sde-link-grid");
    var cell = e.target.closest(".ag-cell");
    if (e.key === "Enter" && links && cell && !e.shiftKey) {
      e.preventDefault();
      e.stopPropagation();
      cell.click();  // AG Grid's cellClicked: the page's callback opens the row's link
      return;
    }
    if (e.key !== "Tab") return;
    var header = e.target.closest(".ag-header-cell");
    if (!links) {
      // cells focusable: AG Grid's own Tab; else only from the last header cell, forwards
      if (e.shiftKey || !header || grid.querySelector(".ag-cell[tabindex]") || !lastHeader(header, grid)) return;
    } else if ((!header && !cell) || e.target.closest(".ag-floating-filter")) {
      return;  // a column filter's box: Tab goes on to the next one, as in any grid
    }
    var next = outside(grid, e.shiftKey);
    if (!next) return;
    e.preventDefault();
    e.stopPropagation();
    next.focus();
  }, true);

  document.addEventListener("focusin", function (e) {
    var row = e.target && e.target.closest ? e.target.closest(".sde-link-grid .ag-row[row-index]") : null;
    if (row) row.closest(".sde-link-grid").__sdeRow = +row.getAttribute("row-index");
  }, true);

  function gridApi(holder) {
    try {
      return holder.id && window.dash_ag_grid ? window.dash_ag_grid.getApi(holder.id) : null;
    } catch (err) { return null; }  // not made yet: AG Grid's own landing
  }

  // Capturing, on the document: runs before the guard's own focus listener, which it can stop.
  // The top guard takes the focus on Tab into the grid, the bottom one on Shift+Tab.
  document.addEventListener("focus", function (e) {
    var guard = e.target;
    if (!guard || !guard.classList || !(guard.classList.contains("ag-tab-guard-top") ||
                                        guard.classList.contains("ag-tab-guard-bottom"))) return;
    var holder = guard.closest(".sde-link-grid"), root = guard.closest(".ag-root-wrapper");
    if (!holder || !root || (e.relatedTarget && root.contains(e.relatedTarget))) return;
    var api = gridApi(holder);
    var columns = api ? api.getAllDisplayedColumns() : [];
    var rows = api ? api.getDisplayedRowCount() : 0;
    if (!rows || !columns.length) return;
    var index = holder.__sdeRow >= 0 && holder.__sdeRow < rows ? holder.__sdeRow : 0;
    e.stopImmediatePropagation();
    api.ensureIndexVisible(index);
    (function land(tries) {
      api.setFocusedCell(index, columns[0]);
      // a row scrolled out of view is drawn a frame or two after ensureIndexVisible
      if (document.activeElement === guard && tries > 0) window.requestAnimationFrame(function () { land(tries - 1); });
    })(10);
  }, true);
})();

/* A drag across a grid cell's text selects it (the grids allow cell text selection), and the browser
   ends the drag with a click on the cell: that click opened the row, and the page left before the
   selection could be copied. A click whose pointer moved since it went down, and that leaves a
   selection inside the grid, is the drag's, so the grid never sees it. A click that stays in place
   opens the row, even on selected text (the selection is let go only once the click is over). */
(function () {
  var DRAG_PX = 4;
  var down = null;
  window.addEventListener("mousedown", function (ev) { down = {x: ev.clientX, y: ev.clientY}; }, true);
  window.addEventListener("click", function (ev) {
    var moved = down && Math.abs(ev.clientX - down.x) + Math.abs(ev.clientY - down.y) > DRAG_PX;
    var cell = moved && ev.target && ev.target.closest ? ev.target.closest(".ag-cell") : null;
    var selection = cell && window.getSelection ? window.getSelection() : null;
    if (!selection || selection.isCollapsed || !selection.toString().trim()) return;
    var grid = cell.closest(".ag-root-wrapper");
    if (grid && grid.contains(selection.anchorNode)) ev.stopPropagation();
  }, true);
})();
