/* sde review mode keys (the inspector's review panel, sde/web/panels/review.py). Only while the
   "review mode" switch is on, and never while typing in a box:
     a keep · d drop · f fix (the caret at the end of the corrected transcript: type, Enter saves it)
     n next unreviewed · z undo
   Esc leaves the transcript box without saving; Caps Lock does not change the keys. The keys click
   the panel's own buttons, so a key does exactly what the button does (and is disabled when the
   button is). They leave alone the inspector's j/k/←/→/u/Space.

   A mark in review mode moves on to another utterance, and a fast typist goes on before it is
   shown. From the mark until the panel of the utterance in the URL is rendered (the status's
   data-uid, no "opening utterance …" in it, and the mark's answer shown), a key never acts on an
   utterance not seen: a/d/n/z are ignored (a note says so), and f with the correction typed after
   it is kept, then put in the new panel's transcript box (with the focus, to go on typing there);
   an Enter typed with it saves the fix there, as it would have once the panel was shown.

   For a screen reader (and anyone not looking at the panel): one polite live region, outside the
   page's React tree so that it outlives the page a mark moves on to, says what each mark did (the
   server's words: the answer's data-said) and, once the next utterance is shown, which one it is
   and where in the list; the focus, lost to <body> when a page replaces the one it was on, goes to
   the utterance's heading, where the keys go on working. The window's title names the utterance
   too, set by the page shell (sde/web/app.py, page_title) as each page is rendered: no script here
   touches it. */
(function () {
  var BUTTONS = {a: "review-keep", d: "review-drop", n: "review-next", z: "review-undo"};
  var MARKS = "#review-keep, #review-drop, #review-fix, #review-undo, #review-next, #review-take-mine, " +
              "#review-take-theirs";
  var NOT_TYPED = ["checkbox", "radio", "button", "submit", "reset", "range", "color"];
  var pending = null;  // a mark made in review mode whose answer is not shown yet: {uid, answer}
  var fix = null;      // f and a correction typed while the keys wait: {text, enter, from}
  var noteTimer = null;

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
  function keyOf(ev) {
    // Caps Lock on: "D" without Shift is still the d key (else the keys did nothing, silently)
    return ev.key && ev.key.length === 1 && !ev.shiftKey ? ev.key.toLowerCase() : ev.key;
  }
  function attr(id, name) {
    var el = document.getElementById(id);
    return el ? el.getAttribute(name) : null;
  }
  function shownUid() { return attr("review-status", "data-uid"); }
  function urlUid() {
    var m = /\/utterance\/(\d+)\/?$/.exec(window.location.pathname);
    return m ? m[1] : null;
  }
  function mark() {
    if (reviewMode()) pending = {uid: shownUid(), answer: attr("review-answer", "data-answer")};
  }
  // Whether the keys wait: a mark's answer not shown yet, a panel on its way to another utterance,
  // or the panel shown not the URL's utterance (the page is loading).
  function waiting() {
    if (pending && (attr("review-answer", "data-answer") !== pending.answer || shownUid() !== pending.uid)) {
      pending = null;
    }
    if (pending) return true;
    var shown = shownUid(), url = urlUid();
    if (shown === null) return true;
    if (url !== null && parseInt(shown, 10) !== parseInt(url, 10)) return true;
    return !!document.getElementById("review-leaving");
  }
  function note(text) {
    // Outside the page's React tree: a line at the bottom of the window, gone after a while.
    var el = document.getElementById("review-keys-note");
    if (!el) {
      el = document.createElement("div");
      el.id = "review-keys-note";
      el.className = "review-keys-note";  // its looks: sde.css
      // made when first needed, it would not be heard: the live region, there from the start, says it
      el.setAttribute("aria-hidden", "true");
      document.body.appendChild(el);
    }
    el.textContent = text;
    say(text);
    el.hidden = false;
    clearTimeout(noteTimer);
    noteTimer = setTimeout(function () { el.hidden = true; }, 4000);
  }
  function caretAtEnd(box) {
    // Not the whole text selected: typed words would replace it, unseen by one who cannot see the
    // selection. A reviewer mostly appends or edits a word.
    var end = box.value.length;
    box.setSelectionRange(end, end);
  }
  function live() {
    var el = document.getElementById("review-live");
    if (!el && document.body) {
      el = document.createElement("div");
      el.id = "review-live";
      el.className = "visually-hidden";  // Bootstrap's: heard, not seen
      el.setAttribute("role", "status");
      el.setAttribute("aria-live", "polite");
      el.setAttribute("aria-atomic", "true");
      document.body.appendChild(el);
    }
    return el;
  }
  function say(text) {
    var el = live();
    // the same words again (a key ignored twice) must change the region, or they are not said again
    if (el) el.textContent = el.textContent === text ? text + "\u00a0" : text;
  }
  function setValue(box, text) {
    // as if typed: React (and so the panel's callback) sees the new value
    Object.getOwnPropertyDescriptor(HTMLInputElement.prototype, "value").set.call(box, text);
    box.dispatchEvent(new Event("input", {bubbles: true}));
  }
  // Once the keys wait no more, the correction typed meanwhile goes to the panel shown.
  function settle() {
    if (!fix || waiting()) return;
    var typed = fix;
    fix = null;
    var box = document.getElementById("review-text");
    if (!box || box.disabled || !reviewMode()) {
      if (typed.text) note("correction not saved (no transcript box to put it in): " + typed.text);
      return;
    }
    var shown = document.getElementById("review-keys-note");
    if (shown) shown.hidden = true;  // the correction is in the box now
    box.focus();
    // as f does once the panel is shown: what was typed goes after the transcript (replacing it
    // lost the words the reviewer did not retype)
    if (typed.text) setValue(box, box.value + typed.text);
    caretAtEnd(box);
    if (!typed.enter) return;
    if (shownUid() === typed.from) {
      // the mark did not move on (a conflict, an error): the correction was meant for another utterance
      note("correction not saved: it is in the box, Enter saves it here");
      return;
    }
    var button = document.getElementById("review-fix");
    if (button && !button.disabled) button.click();  // what Enter in the box does
  }

  // First of all (capture): the keys typed while the keys wait.
  window.addEventListener("keydown", function (ev) {
    if (ev.altKey || ev.ctrlKey || ev.metaKey) return;
    if (fix) {
      if (ev.key === "Escape") {
        fix = null;  // as Esc in the box: nothing saved
        note("correction dropped (Esc)");
      } else if (ev.key === "Backspace") {
        if (!fix.enter) fix.text = fix.text.slice(0, -1);
      } else if (ev.key === "Enter") {
        fix.enter = true;
      } else if (ev.key && ev.key.length === 1) {
        if (!fix.enter) fix.text += ev.key;  // after its Enter: keys for a panel not seen, ignored
      } else {
        return;
      }
      if (fix) note("correction for the next utterance: " + fix.text + (fix.enter ? " (Enter: saved once shown)" : ""));
      ev.preventDefault();
      ev.stopPropagation();
      settle();
      return;
    }
    if (ev.defaultPrevented || !reviewMode()) return;
    var target = ev.target;
    var inPanel = !!(target && target.closest && target.closest("#review-card"));
    if (!waiting()) {
      if (ev.key === "Enter" && target && target.id === "review-text") mark();  // Enter saves the fix
      return;
    }
    // A box of the panel being left takes nothing more: what is typed there would be lost.
    if (typing(target) && !inPanel) return;
    var key = keyOf(ev);
    if (key === "f") {
      fix = {text: "", enter: false, from: pending ? pending.uid : shownUid()};
      note("correction for the next utterance: (type it, it goes to its box once shown; Esc drops it)");
      if (typing(target)) target.blur();
    } else if (BUTTONS[key]) {
      note("key " + key + " ignored: the next utterance is not shown yet");
    } else if (inPanel && (ev.key === "Enter" || ev.key === " " || (typing(target) && ev.key && ev.key.length === 1))) {
      // typed in a box, or pressing a control, of the panel being left: nothing
    } else {
      return;
    }
    ev.preventDefault();
    ev.stopPropagation();
  }, true);

  document.addEventListener("click", function (ev) {
    if (ev.target && ev.target.closest && ev.target.closest(MARKS)) mark();
  }, true);
  // A click elsewhere: the user is there, whatever the answer (a failed request sends none).
  document.addEventListener("mousedown", function (ev) {
    if (ev.target && ev.target.closest && ev.target.closest(MARKS)) return;
    pending = null;
    settle();
    if (fix) {  // the next utterance is still not shown: the click ends the typing
      note("correction dropped: " + fix.text);
      fix = null;
    }
  }, true);
  var heardAnswer = null;  // the last answer whose words were taken
  var told = null;         // words to say once the utterance they lead to is shown: {said, to}
  var arrived = null;      // the utterance whose panel was last shown
  function tell() {
    var answer = document.getElementById("review-answer");
    var id = answer && answer.getAttribute("data-answer");
    if (id && id !== heardAnswer) {
      heardAnswer = id;
      told = {said: answer.getAttribute("data-said") || "", to: answer.getAttribute("data-to") || ""};
    }
    var shown = shownUid();
    if (shown === null) arrived = null;  // another page: coming back to the same utterance is arriving
    if (shown === null || waiting()) return;
    if (told && (!told.to || told.to === shown)) {
      var words = told.said;
      if (told.to) {
        var place = document.getElementById("utt-position");
        place = place ? place.textContent.trim() : "";
        words += (words ? "; now" : "Now") + " utterance " + shown + (place ? ", " + place : "");
      }
      told = null;
      if (words) say(words);
    }
    if (shown !== arrived) {
      arrived = shown;
      var lost = !document.activeElement || document.activeElement === document.body;
      var heading = document.querySelector(".utterance-page .page-title");
      if (lost && heading) {
        heading.setAttribute("tabindex", "-1");  // focusable by script only: no extra Tab stop
        heading.focus();
      }
    }
  }
  live();
  new MutationObserver(function () {
    if (fix) settle();
    tell();
  }).observe(document.documentElement, {subtree: true, childList: true, attributes: true,
                                        attributeFilter: ["data-uid", "data-answer", "id"]});

  document.addEventListener("keydown", function (ev) {
    if (ev.defaultPrevented || ev.altKey || ev.ctrlKey || ev.metaKey) return;
    if (ev.key === "Escape" && ev.target && ev.target.id === "review-text") {
      ev.target.blur();
      return;
    }
    if (typing(ev.target) || !reviewMode()) return;
    var key = keyOf(ev);
    if (key === "f") {
      var box = document.getElementById("review-text");
      if (!box || box.disabled) return;
      ev.preventDefault();
      box.focus();
      caretAtEnd(box);
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
