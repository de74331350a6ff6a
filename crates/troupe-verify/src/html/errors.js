// Shows every error of the report's script in #errors, where a reader (and a test) sees it.
// A script of its own, before the report's, so that even a syntax error there is shown.
(function () {
  "use strict";
  function showError(text) {
    document.body.dataset.rendered = "error";
    const errors = document.getElementById("errors");
    if (!errors) return;
    errors.hidden = false;
    const line = document.createElement("div");
    line.className = "error";
    line.textContent = text;
    errors.appendChild(line);
  }
  window.onerror = function (message, source, line, column, error) {
    const where = line ? " (line " + line + ":" + column + ")" : "";
    const stack = error && error.stack ? "\n" + error.stack : "";
    showError("error: " + message + where + stack);
    return false;
  };
  window.addEventListener("unhandledrejection", function (event) {
    showError("error: unhandled rejection: " + event.reason);
  });
})();
