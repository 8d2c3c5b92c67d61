// The run page while a run goes on: a clock for the elapsed time, and the live groups kept
// one card per group (a card the socket appends for a group the page already shows is
// dropped: the page's own card holds the same stream targets).
(function () {
  "use strict";

  function clock(seconds) {
    var s = Math.max(0, Math.floor(seconds));
    var h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
    if (h) return h + " h " + String(m).padStart(2, "0") + " min";
    if (m) return m + " min " + String(r).padStart(2, "0") + " s";
    return r + " s";
  }

  function tick() {
    document.querySelectorAll("[data-elapsed-from]").forEach(function (el) {
      var since = Date.parse(el.getAttribute("data-elapsed-from"));
      if (!isNaN(since)) el.textContent = clock((Date.now() - since) / 1000);
    });
  }

  function dedupe(added) {
    if (!(added instanceof Element)) return;
    var cards = added.matches(".live-group") ? [added] : Array.prototype.slice.call(added.querySelectorAll(".live-group"));
    cards.forEach(function (card) {
      var same = document.querySelectorAll("#" + CSS.escape(card.id));
      if (same.length > 1 && same[0] !== card) card.remove();
    });
    var empty = document.getElementById("no-groups");
    if (empty && document.querySelector("#live-groups .live-group")) empty.remove();
  }

  document.addEventListener("DOMContentLoaded", function () {
    if (document.querySelector("[data-elapsed-from]")) setInterval(tick, 1000);
    var root = document.querySelector("main");
    if (!root || !window.MutationObserver) return;
    new MutationObserver(function (changes) {
      changes.forEach(function (change) {
        change.addedNodes.forEach(dedupe);
      });
    }).observe(root, { childList: true, subtree: true });
  });
})();
