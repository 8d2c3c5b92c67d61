// The new-run form shows the fields of the chosen kind only. Without this script every field
// shows and works; the server checks what each kind needs either way. A hidden field is
// disabled too, so it is not sent with a kind it does not belong to.
(function () {
  "use strict";

  function apply(form, kind) {
    form.querySelectorAll("[data-kinds]").forEach(function (field) {
      var shown = field.getAttribute("data-kinds").split(" ").indexOf(kind) !== -1;
      field.hidden = !shown;
      field.querySelectorAll("input, select, textarea").forEach(function (control) {
        control.disabled = !shown;
      });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var form = document.getElementById("run-form");
    var kind = form && form.querySelector("select[name=kind]");
    if (!kind) return;
    apply(form, kind.value);
    kind.addEventListener("change", function () {
      apply(form, kind.value);
    });
  });
})();
