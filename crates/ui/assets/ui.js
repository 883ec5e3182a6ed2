// hookline UI's progressive enhancement: the pages work without it.
// - <time datetime="..."> shows the viewer's local time (UTC stays in its title);
// - a button with data-copy="ID" copies the text of the element with that id;
// - an element with data-refresh="N" reloads the page every N seconds
//   (an event whose deliveries are under way) while the page is shown;
// - an empty input with data-default-since="N" starts as N seconds ago, in UTC.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  for (const el of document.querySelectorAll("time[datetime]")) {
    const when = new Date(el.getAttribute("datetime"));
    if (Number.isNaN(when.getTime())) continue;
    el.title = when.toISOString().replace(".000Z", "Z") + " (UTC)";
    el.textContent = when.toLocaleString();
  }
  for (const button of document.querySelectorAll("button[data-copy]")) {
    button.hidden = false;
    button.addEventListener("click", async () => {
      const source = document.getElementById(button.dataset.copy);
      if (!source) return;
      try {
        await navigator.clipboard.writeText(source.textContent.trim());
        button.textContent = "Copied";
      } catch {
        button.textContent = "Select and copy it";
      }
    });
  }
  const refresh = document.querySelector("[data-refresh]");
  if (refresh) {
    const seconds = Math.max(1, Number(refresh.dataset.refresh) || 2);
    setTimeout(() => {
      if (!document.hidden) location.reload();
    }, seconds * 1000);
  }
  for (const input of document.querySelectorAll("input[data-default-since]")) {
    if (input.value) continue;
    const ago = Number(input.dataset.defaultSince) || 86400;
    input.value = new Date(Date.now() - ago * 1000).toISOString().replace(/\.\d{3}Z$/, "Z");
  }
});
