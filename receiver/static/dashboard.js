/* runway-relay dashboard: local times, copy buttons. No inline script anywhere (the
   Content-Security-Policy forbids it); htmx does the live refresh. */
(function () {
  "use strict";

  var format = new Intl.DateTimeFormat(undefined, {
    year: "numeric", month: "short", day: "2-digit",
    hour: "2-digit", minute: "2-digit", second: "2-digit",
    timeZoneName: "short"
  });

  /* Each <time data-local datetime="…Z"> shows UTC in the markup; show it in the viewer's
     zone instead and keep the UTC value in the tooltip. */
  function localize(root) {
    var nodes = (root.querySelectorAll ? root : document).querySelectorAll("time[data-local]");
    Array.prototype.forEach.call(nodes, function (node) {
      var when = new Date(node.getAttribute("datetime"));
      if (!isNaN(when.getTime())) {
        node.title = node.textContent.trim();
        node.textContent = format.format(when);
      }
      node.removeAttribute("data-local");
    });
  }

  function copy(event) {
    var button = event.target.closest("[data-copy]");
    if (!button) { return; }
    var source = document.querySelector(button.getAttribute("data-copy"));
    if (!source || !navigator.clipboard) { return; }
    navigator.clipboard.writeText(source.textContent.trim()).then(function () {
      button.textContent = "Copied";
    });
  }

  document.addEventListener("DOMContentLoaded", function () { localize(document); });
  document.addEventListener("htmx:load", function (event) { localize(event.target); });
  document.addEventListener("click", copy);
})();
