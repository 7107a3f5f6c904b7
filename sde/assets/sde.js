/* sde keyboard shortcuts for the utterance inspector: → or j next, ← or k previous, u back to the list.
   The buttons are dcc.Link anchors, so clicking them navigates client-side like a mouse click. */
(function () {
  function typing(el) {
    if (!el) return false;
    var tag = (el.tagName || "").toLowerCase();
    return tag === "input" || tag === "textarea" || tag === "select" || el.isContentEditable;
  }
  document.addEventListener("keydown", function (ev) {
    if (ev.defaultPrevented || ev.altKey || ev.ctrlKey || ev.metaKey || typing(ev.target)) return;
    var target = null;
    if (ev.key === "ArrowRight" || ev.key === "j") target = "utt-next";
    else if (ev.key === "ArrowLeft" || ev.key === "k") target = "utt-prev";
    else if (ev.key === "u") target = "utt-back";
    if (!target) return;
    var el = document.getElementById(target);
    if (!el || el.tagName !== "A") return;
    ev.preventDefault();
    el.click();
  });
})();

/* Waveform <-> player: clicking the waveform or spectrogram seeks the player to that time, and a
   vertical line on both plots follows the player's position. The figure and the player are
   re-created by Dash on every page, so the binding is checked on a short timer (cheap: two
   lookups) rather than once. */
(function () {
  var PLAYHEAD = {type: "line", xref: "x", yref: "paper", x0: 0, x1: 0, y0: 0, y1: 1,
                  line: {color: "#e74c3c", width: 2}};
  function bind() {
    var holder = document.getElementById("utt-signal");
    var audio = document.getElementById("utt-audio");
    if (!holder || !audio || !window.Plotly) return;
    var plot = holder.querySelector(".js-plotly-plot");
    if (!plot || !plot.on) return;
    if (plot.__sdeBound !== audio) {
      plot.__sdeBound = audio;
      plot.on("plotly_click", function (ev) {
        if (!ev || !ev.points || !ev.points.length) return;
        var t = Number(ev.points[0].x);
        if (isFinite(t)) { audio.currentTime = Math.max(0, t); }
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
  setInterval(bind, 300);
})();
