// Keyboard-first review: score, move, submit, skip, undo; unsent work survives a reload.
// htmx does the requests and swaps; this file only handles keys, focus and localStorage.
(function () {
  "use strict";

  const PREFIX = "shaping:review:";
  const pos = { col: 0, crit: 0 };

  const $ = (sel, root) => (root || document).querySelector(sel);
  const $$ = (sel, root) => Array.from((root || document).querySelectorAll(sel));
  const reviewForm = () => $("#review-form");
  const columns = () => $$("#review-form .completion");
  const criteriaOf = (col) => $$("fieldset.criterion", col);
  const clamp = (n, lo, hi) => Math.max(lo, Math.min(hi, n));
  const storageKey = (form) => PREFIX + form.dataset.assignment;

  // --- highlight -------------------------------------------------------------------
  function current() {
    const cols = columns();
    if (!cols.length) return null;
    pos.col = clamp(pos.col, 0, cols.length - 1);
    const crits = criteriaOf(cols[pos.col]);
    pos.crit = clamp(pos.crit, 0, Math.max(crits.length - 1, 0));
    return { col: cols[pos.col], fieldset: crits[pos.crit] };
  }

  // The submit bar is fixed to the bottom of the screen: whatever scrolls into view (the
  // highlighted criterion, a text box) stops above it, however tall it wraps.
  function keepClearOfBar() {
    const bar = $(".submit-bar");
    if (bar) document.documentElement.style.scrollPaddingBottom = `${bar.offsetHeight + 8}px`;
  }
  window.addEventListener("resize", keepClearOfBar);

  function paint(scroll) {
    $$(".kb-focus, .kb-col").forEach((el) => el.classList.remove("kb-focus", "kb-col"));
    const here = current();
    if (!here || !here.fieldset) return;
    here.col.classList.add("kb-col");
    here.fieldset.classList.add("kb-focus");
    if (scroll) here.fieldset.scrollIntoView({ block: "nearest", inline: "nearest" });
  }

  function move(dCol, dCrit) {
    const cols = columns();
    if (!cols.length) return;
    if (dCol) {
      pos.col = clamp(pos.col + dCol, 0, cols.length - 1);
    } else {
      const n = criteriaOf(cols[pos.col]).length;
      const next = pos.crit + dCrit;
      // Walking off the last criterion continues on the next completion.
      if (next >= n && pos.col < cols.length - 1) { pos.col += 1; pos.crit = 0; }
      else if (next < 0 && pos.col > 0) { pos.col -= 1; pos.crit = criteriaOf(cols[pos.col]).length - 1; }
      else pos.crit = clamp(next, 0, n - 1);
    }
    paint(true);
  }

  function score(digit) {
    const here = current();
    if (!here || !here.fieldset) return;
    const input = $(`input[type=radio][value="${digit}"]`, here.fieldset);
    if (!input) { here.fieldset.classList.add("kb-miss"); setTimeout(() => here.fieldset.classList.remove("kb-miss"), 300); return; }
    input.checked = true;
    input.dispatchEvent(new Event("change", { bubbles: true }));
    move(0, 1);
  }

  // --- derived bits shown while scoring ----------------------------------------------
  function describe(fieldset) {
    const checked = $("input[type=radio]:checked", fieldset);
    $(".level-desc", fieldset).textContent = checked ? checked.dataset.level || "" : "";
  }

  function overall(col) {
    let total = 0, weights = 0;
    // Every criterion counts: the reviewer's (fieldsets) and the rules' (read-only, data-score).
    for (const fs of $$(".criterion", col)) {
      const checked = fs.classList.contains("rule") ? { value: fs.dataset.score } : $("input[type=radio]:checked", fs);
      if (!checked) return null;
      const lo = Number(fs.dataset.min), hi = Number(fs.dataset.max), w = Number(fs.dataset.weight);
      total += (w * (Number(checked.value) - lo)) / (hi - lo);
      weights += w;
    }
    return weights ? total / weights : 0;
  }

  // The server ranks by weighted score when rank boxes are left empty; show that rank.
  function showDerivedRanks() {
    const cols = columns();
    const scores = cols.map(overall);
    cols.forEach((col, i) => {
      const box = $("input[name^=rank-]", col);
      if (!box) return;
      box.placeholder = scores[i] === null ? "auto" : String(1 + scores.filter((s) => s !== null && s > scores[i]).length);
    });
  }

  // --- unsent work in localStorage ---------------------------------------------------
  function save(form) {
    const fields = {};
    for (const el of form.elements) {
      if (!el.name || el.type === "hidden" && el.name !== "submission_id") continue;
      if (el.name === "csrfmiddlewaretoken") continue;
      if (el.type === "radio") { if (el.checked) fields[el.name] = el.value; }
      else if (el.type === "checkbox") fields[el.name] = el.checked;
      else fields[el.name] = el.value;
    }
    try { localStorage.setItem(storageKey(form), JSON.stringify({ fields, saved: Date.now() })); } catch (e) { /* storage full or off: the form still works */ }
  }

  function restore(form) {
    let saved = null;
    try { saved = JSON.parse(localStorage.getItem(storageKey(form)) || "null"); } catch (e) { saved = null; }
    if (!saved) {
      // First sight of this group: the id a retry will reuse is fixed now, client-side.
      if (window.crypto && crypto.randomUUID) form.elements.submission_id.value = crypto.randomUUID();
      save(form);
      return;
    }
    for (const [name, value] of Object.entries(saved.fields)) {
      const els = form.elements[name];
      if (!els) continue;
      const list = els instanceof RadioNodeList ? Array.from(els) : [els];
      for (const el of list) {
        if (el.type === "radio") el.checked = el.value === value;
        else if (el.type === "checkbox") el.checked = Boolean(value);
        else el.value = value;
      }
    }
  }

  function forget(keep) {
    // Keep the group just submitted (undo brings it back) and the one on screen.
    for (let i = localStorage.length - 1; i >= 0; i--) {
      const key = localStorage.key(i);
      if (key && key.startsWith(PREFIX) && !keep.includes(key)) localStorage.removeItem(key);
    }
  }

  // --- set-up for each panel htmx swaps in --------------------------------------------
  function init() {
    const form = reviewForm();
    if (!form || form.dataset.ready) return;
    form.dataset.ready = "1";
    restore(form);
    criteriaOf(form).forEach(describe);
    showDerivedRanks();
    pos.col = 0; pos.crit = 0;
    // Start where work stops: the first criterion without a score.
    const cols = columns();
    outer: for (let c = 0; c < cols.length; c++) {
      const crits = criteriaOf(cols[c]);
      for (let k = 0; k < crits.length; k++) {
        if (!$("input:checked", crits[k])) { pos.col = c; pos.crit = k; break outer; }
      }
    }
    keepClearOfBar();
    paint(false);
    form.addEventListener("change", (e) => {
      const fs = e.target.closest("fieldset.criterion");
      if (fs) { describe(fs); showDerivedRanks(); }
      save(form);
    });
    form.addEventListener("input", () => save(form));
    form.addEventListener("click", (e) => {
      const fs = e.target.closest("fieldset.criterion");
      if (!fs) return;
      const col = fs.closest(".completion");
      pos.col = columns().indexOf(col);
      pos.crit = criteriaOf(col).indexOf(fs);
      paint(false);
    });
  }

  // The help is a modal dialog: it takes focus (its Close button), keys do nothing behind it,
  // and focus returns where it was when it closes.
  let focusBeforeHelp = null;
  function toggleHelp(force) {
    const help = $("#key-help");
    if (!help) return;
    const open = force === undefined ? help.hidden : force;
    if (open === !help.hidden) return;
    help.hidden = !open;
    if (open) {
      focusBeforeHelp = document.activeElement;
      $("button", help).focus();
    } else if (focusBeforeHelp && document.contains(focusBeforeHelp)) {
      focusBeforeHelp.focus();
    }
  }

  // c, r and f act on the highlighted completion: its critique box, its rewrite, its flag.
  function critique() {
    const here = current();
    const box = here && $("textarea[name^=critique-]", here.col);
    if (box) { box.focus(); box.scrollIntoView({ block: "nearest" }); }
  }

  function rewrite() {
    const here = current();
    const details = here && $("details.rewrite", here.col);
    if (!details) return;
    details.open = true;
    const box = $("textarea", details);
    box.focus();
    box.scrollIntoView({ block: "nearest" });
  }

  function flag() {
    const here = current();
    const box = here && $("input[name^=flag-]", here.col);
    if (!box) return;
    box.checked = !box.checked;
    box.dispatchEvent(new Event("change", { bubbles: true }));
  }

  function toggleJudge() {
    const box = $("#review-form .completions");
    const button = $("[data-action=toggle-judge]");
    if (!box) return;
    const hidden = box.classList.toggle("judge-hidden");
    if (button) {
      button.setAttribute("aria-pressed", String(!hidden));
      button.textContent = hidden ? "Show judge scores" : "Hide judge scores";
    }
  }

  function showError(message) {
    const box = $("#review-error");
    if (!box) return;
    box.textContent = message;
    box.hidden = !message;
  }

  // A key pressed right after a swap may reach content htmx has not wired up yet (it
  // does so when the swap settles): wire it now, or the key would do nothing, or post
  // the form without htmx. Processing an element twice is harmless.
  function wired(el) {
    if (el && window.htmx) htmx.process(el);
    return el;
  }

  function submit() {
    const form = wired(reviewForm());
    if (form) form.requestSubmit();
  }

  function click(sel) {
    const el = wired($(sel));
    if (el) el.click();
  }

  document.addEventListener("keydown", (e) => {
    const t = e.target;
    const typing = t.matches && t.matches("textarea, select, input:not([type=radio]):not([type=checkbox])");
    if (typing) {
      if (e.key === "Enter" && (e.ctrlKey || e.metaKey) && t.form === reviewForm()) { e.preventDefault(); submit(); }
      else if (e.key === "Escape") t.blur();
      return;
    }
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    const help = $("#key-help");
    if (help && !help.hidden) {
      if (e.key === "Escape" || e.key === "?") { toggleHelp(false); e.preventDefault(); }
      else if (e.key === "Tab") { e.preventDefault(); $("button", help).focus(); }  // focus stays in the dialog
      else if (!(e.key === "Enter" || e.key === " ")) e.preventDefault();  // nothing behind it is scored
      return;
    }
    // Enter and Space on a focused button, link or summary keep their usual meaning.
    if (t.closest && t.closest("button, a, summary") && (e.key === "Enter" || e.key === " ")) return;
    let handled = true;
    if (/^[0-9]$/.test(e.key)) score(e.key);
    else if (e.key === "j" || e.key === "ArrowDown") move(0, 1);
    else if (e.key === "k" || e.key === "ArrowUp") move(0, -1);
    else if (e.key === "l" || e.key === "ArrowRight") move(1, 0);
    else if (e.key === "h" || e.key === "ArrowLeft") move(-1, 0);
    else if (e.key === "Enter") submit();
    else if (e.key === "s") click("#skip-button");
    else if (e.key === "u") click("#undo-button");
    else if (e.key === "v") toggleJudge();
    else if (e.key === "c") critique();
    else if (e.key === "r") rewrite();
    else if (e.key === "f") flag();
    else if (e.key === "?") toggleHelp();
    else handled = false;
    if (handled) e.preventDefault();
  });

  document.addEventListener("click", (e) => {
    const action = e.target.closest("[data-action]");
    if (!action) return;
    if (action.dataset.action === "help") toggleHelp();
    if (action.dataset.action === "toggle-judge") toggleJudge();
  });

  // Server answers and connection trouble both surface above the form.
  // An element naming its own error box (data-error-target) gets the message beside it.
  document.addEventListener("htmx:responseError", (e) => {
    const message = e.detail.xhr.responseText || `The server answered ${e.detail.xhr.status}.`;
    const own = e.detail.elt && e.detail.elt.dataset && e.detail.elt.dataset.errorTarget;
    const box = own && document.getElementById(own);
    if (box) { box.textContent = message; box.hidden = false; }
    else showError(message);
  });
  document.addEventListener("htmx:sendError", () => {
    showError("Could not reach the server. Nothing was lost: your scores are kept here; press Enter to retry.");
  });
  document.addEventListener("htmx:beforeRequest", () => showError(""));

  // HX-Trigger fires before the swap: tidy up once the next group is on screen.
  document.addEventListener("review-submitted", (e) => {
    const done = PREFIX + e.detail.assignment;
    document.addEventListener("htmx:afterSettle", () => {
      const form = reviewForm();
      forget(form ? [done, storageKey(form)] : [done]);
    }, { once: true });
  });

  // A new group opens at its prompt, not at the scroll position the last one was left at.
  document.addEventListener("htmx:afterSettle", (e) => {
    if (e.target && e.target.id === "review-panel") window.scrollTo({ top: 0 });
    init();
  });
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
