// A <select data-autosubmit> submits its form when it changes (no inline handlers: the CSP forbids them).
for (const select of document.querySelectorAll("select[data-autosubmit]")) {
  select.addEventListener("change", () => select.form.submit());
}
