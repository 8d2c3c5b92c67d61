// Accessible names the admin's widgets leave out: the date and time halves of a date-time
// field get their field's label, and the selector widget's help icons are images.
(function () {
  "use strict";

  function name() {
    document.querySelectorAll("p.datetime").forEach((row) => {
      const field = row.closest(".form-row, .fieldBox, div");
      const label = field && field.querySelector("label");
      const text = label ? label.textContent.replace(/:\s*$/, "").trim() : "";
      row.querySelectorAll("input.vDateField, input.vTimeField").forEach((input) => {
        if (!input.hasAttribute("aria-label") && !document.querySelector(`label[for="${CSS.escape(input.id)}"]`)) {
          input.setAttribute("aria-label", `${text} (${input.classList.contains("vDateField") ? "date" : "time"})`);
        }
      });
    });
    document.querySelectorAll("span.help-tooltip[aria-label]:not([role])").forEach((icon) => icon.setAttribute("role", "img"));
  }

  // The selector widget draws its help icons after load.
  window.addEventListener("load", () => { name(); setTimeout(name, 0); });
})();
