// Injected into a copy of the Snakemake report by tests/test_workflow.py: drives the page as a
// reader would (open a category in the menu, click a result's eye button), notes what the page
// then shows, and leaves the summary table on screen. FIGURES is defined by the test.
// The notes go into <pre id="browser-check"> for `chromium --dump-dom`.
(async () => {
  const pause = (ms) => new Promise((done) => setTimeout(done, ms));
  const notes = { errors: [], figures: {}, table: null };
  window.addEventListener("error", (event) => notes.errors.push(String(event.message)));
  const link = (text) => [...document.querySelectorAll("nav a")].find(
    (a) => a.textContent.trim() === text);
  async function show(category, label) {
    document.querySelector("nav ol a").click();  // home, in the breadcrumbs
    await pause(300);
    link(category).click();
    await pause(300);
    const row = [...document.querySelectorAll("nav tr")].find(
      (tr) => [...tr.querySelectorAll("td")].some((td) => td.textContent.trim() === label));
    if (!row) return null;
    row.querySelector("a").click();  // the eye button
    await pause(1000);
    return document.querySelector("div.grow.flex.items-center");  // the content pane
  }
  await pause(500);
  notes.menu = document.querySelector("nav").innerText;
  for (const title of FIGURES) {
    const img = (await show("Figures", title))?.querySelector("img");
    notes.figures[title] = img && { width: img.naturalWidth, height: img.naturalHeight,
                                    png: img.src.startsWith("data:image/png") };
  }
  const frame = (await show("Results", "all models"))?.querySelector("iframe");
  notes.table = frame && { html: frame.src.startsWith("data:text/html"),
                           width: frame.clientWidth, height: frame.clientHeight };
  const out = document.createElement("pre");
  out.id = "browser-check";
  out.textContent = JSON.stringify(notes);
  document.body.appendChild(out);
})();
