/* sde review mode keys (the inspector's review panel, sde/web/panels/review.py). Only while the
   "review mode" switch is on, and never while typing in a box:
     a keep · d drop · f fix (focuses the corrected transcript: type, Enter saves it) · n next unreviewed · z undo
   Esc leaves the transcript box without saving; Caps Lock does not change the keys. The keys click
   the panel's own buttons, so a key does exactly what the button does (and is disabled when the
   button is). They leave alone the inspector's j/k/←/→/u/Space. */
(function () {
  var BUTTONS = {a: "review-keep", d: "review-drop", n: "review-next", z: "review-undo"};
  var NOT_TYPED = ["checkbox", "radio", "button", "submit", "reset", "range", "color"];
  function typing(el) {
    if (!el) return false;
    var tag = (el.tagName || "").toLowerCase();
    // The review-mode switch is a checkbox: focused after a click, it must not swallow the keys.
    if (tag === "input") return NOT_TYPED.indexOf((el.type || "text").toLowerCase()) < 0;
    return tag === "textarea" || tag === "select" || el.isContentEditable;
  }
  function reviewMode() {
    var sw = document.getElementById("review-mode");
    return !!(sw && sw.checked && !sw.disabled);
  }
  document.addEventListener("keydown", function (ev) {
    if (ev.defaultPrevented || ev.altKey || ev.ctrlKey || ev.metaKey) return;
    if (ev.key === "Escape" && ev.target && ev.target.id === "review-text") {
      ev.target.blur();
      return;
    }
    if (typing(ev.target) || !reviewMode()) return;
    // Caps Lock on: "D" without Shift is still the d key (else the keys did nothing, silently)
    var key = ev.key && ev.key.length === 1 && !ev.shiftKey ? ev.key.toLowerCase() : ev.key;
    if (key === "f") {
      var box = document.getElementById("review-text");
      if (!box || box.disabled) return;
      ev.preventDefault();
      box.focus();
      box.select();
      return;
    }
    var id = BUTTONS[key];
    if (!id) return;
    var button = document.getElementById(id);
    if (!button || button.disabled) return;
    ev.preventDefault();
    button.click();
  });
})();
