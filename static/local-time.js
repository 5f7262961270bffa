// Shows every <time datetime> in the viewer's own time zone; the UTC time stays in its
// title (shown on hover) and is what the page says without JavaScript.
"use strict";
for (const el of document.querySelectorAll("time[datetime]")) {
  const d = new Date(el.getAttribute("datetime"));
  if (Number.isNaN(d.getTime())) continue;
  el.textContent = d.toLocaleString(undefined, {
    year: "numeric", month: "short", day: "numeric",
    hour: "2-digit", minute: "2-digit", timeZoneName: "short",
  });
}
