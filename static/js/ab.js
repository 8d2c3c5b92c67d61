// Blind A/B from the keyboard: a / b choose an answer, t a tie, x both bad, s skips.
// htmx does the request and swaps the next pair in; this file maps keys to buttons and holds
// the choice back until the end of both answers has been on screen (on a phone the answers
// stack, and B would otherwise be chosen on unseen). Without scripts the buttons just work.
(function () {
  "use strict";

  function gate(form) {
    if (!form || form.dataset.gated) return;
    form.dataset.gated = "1";
    const ends = Array.from(form.querySelectorAll(".ab-end"));
    const buttons = Array.from(form.querySelectorAll("[data-choice-button]"));
    const note = form.querySelector("#ab-unread");
    if (!ends.length || !("IntersectionObserver" in window)) return;
    const unread = new Set(ends.map((end) => end.dataset.side));
    const show = () => {
      const left = Array.from(unread).sort();
      buttons.forEach((button) => { button.disabled = left.length > 0; });
      if (note) {
        note.hidden = left.length === 0;
        note.textContent = left.length ? `Read answer ${left.join(" and ")} to the end to choose.` : "";
      }
    };
    // An end hidden behind the choice bar (it sits at the bottom of the screen) is not read yet.
    const bar = form.querySelector(".ab-bar");
    const margin = `0px 0px -${bar ? bar.offsetHeight : 0}px 0px`;
    const seen = new IntersectionObserver((entries) => {
      for (const entry of entries) {
        if (!entry.isIntersecting) continue;
        unread.delete(entry.target.dataset.side);
        seen.unobserve(entry.target);
      }
      show();
    }, { rootMargin: margin });
    // What is on screen now counts at once: a key pressed before the observer first reports
    // (it reports asynchronously) must not be held back for an answer already in view.
    const visibleBottom = window.innerHeight - (bar ? bar.offsetHeight : 0);
    ends.forEach((end) => {
      const box = end.getBoundingClientRect();
      if (box.top >= 0 && box.bottom <= visibleBottom) unread.delete(end.dataset.side);
      else seen.observe(end);
    });
    show();
  }

  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey || event.repeat) return;
    const target = event.target;
    if (target && (target.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(target.tagName))) return;
    const button = document.querySelector(`#ab-panel button[data-key="${CSS.escape(event.key.toLowerCase())}"]`);
    if (!button) return;
    event.preventDefault();
    if (button.disabled) {
      // Take the reviewer to what they have not read yet.
      const form = document.querySelector("#ab-form");
      const next = form && Array.from(form.querySelectorAll(".ab-end")).find((end) => {
        const box = end.getBoundingClientRect();
        return box.top > window.innerHeight || box.bottom < 0;
      });
      if (next) next.closest(".completion").scrollIntoView({ block: "start" });
      return;
    }
    button.click();
  });

  const ready = () => gate(document.querySelector("#ab-form"));
  // The next pair opens at its prompt; what is then on screen counts as read.
  document.addEventListener("htmx:afterSwap", (e) => {
    window.scrollTo({ top: 0 });
  });
  document.addEventListener("htmx:afterSettle", ready);
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", ready);
  else ready();
})();
