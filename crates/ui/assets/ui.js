// hookline UI's progressive enhancement: the pages work without it.
// - <time datetime="..."> shows the viewer's local time (UTC stays in its title);
// - a button with data-copy="ID" copies the text of the element with that id.
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
});
