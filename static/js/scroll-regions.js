// A table wider than the screen scrolls inside its box (.table-scroll). A box that does
// scroll must be reachable from the keyboard (arrow keys scroll it once focused): it gets a
// tab stop and a name, and loses them when the window grows wide enough to show it all.
(function () {
  "use strict";

  function mark(box) {
    const scrolls = box.scrollWidth > box.clientWidth + 1;
    if (scrolls && !box.hasAttribute("tabindex")) {
      const table = box.querySelector("table");
      const caption = table && (table.caption || table.getAttribute("aria-label"));
      const heading = box.previousElementSibling && /^H[1-6]$/.test(box.previousElementSibling.tagName)
        ? box.previousElementSibling.textContent : "";
      box.setAttribute("tabindex", "0");
      box.setAttribute("role", "region");
      box.setAttribute("aria-label", `${(caption && caption.textContent) || caption || heading || "Table"} (scrolls sideways)`.trim());
      box.dataset.scrollMarked = "1";
    } else if (!scrolls && box.dataset.scrollMarked) {
      ["tabindex", "role", "aria-label", "data-scroll-marked"].forEach((name) => box.removeAttribute(name));
    }
  }

  const all = () => document.querySelectorAll(".table-scroll").forEach(mark);
  let pending = 0;
  const soon = () => { cancelAnimationFrame(pending); pending = requestAnimationFrame(all); };
  window.addEventListener("resize", soon);
  document.addEventListener("htmx:afterSettle", soon);
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", all);
  else all();
})();
