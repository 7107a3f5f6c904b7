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
