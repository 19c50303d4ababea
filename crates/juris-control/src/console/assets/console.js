// juris console: the one script (embedded; loaded with `defer`, allowed by the CSP's
// script-src 'self'). Pages work without it; it only adds the viewer's local time after each
// UTC time.
"use strict";
document.querySelectorAll("time[datetime]").forEach(function (el) {
  var when = new Date(el.getAttribute("datetime"));
  if (isNaN(when.getTime())) { return; }
  var local = document.createElement("span");
  local.className = "local";
  local.textContent = " (" + when.toLocaleString(undefined, {
    year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit",
    timeZoneName: "short"
  }) + ")";
  el.appendChild(local);
});
