// Users imported from a CSV file: the file is read in chunks (the page keeps answering at 10,000 rows), a
// dry run says what each row would do before anything is written, then the rows are sent in batches with
// progress. A row is created on its own: one refused leaves the others created.

import { errorBox, field, h, plural, uid } from "./common/ui.js";
import { sleep } from "./widgets.js";

const BATCH = 1000; // rows per request: the gateway's /users/import limit
const PARSE_CHUNK = 2000; // rows parsed before the page gets a turn
const SHOWN_PROBLEMS = 50;
const COLUMNS = ["email", "name", "password", "login_name"];

/** RFC 4180 records (quoted fields, doubled quotes, CRLF or LF), yielding to the page between chunks. */
export async function parseCsv(text, onProgress) {
  const records = [];
  let record = [];
  let value = "";
  let quoted = false;
  let i = 0;
  const endRecord = () => { record.push(value); value = ""; records.push(record); record = []; };
  while (i < text.length) {
    const c = text[i];
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') { value += '"'; i += 1; } else if (c === '"') quoted = false; else value += c;
    } else if (c === '"') quoted = true;
    else if (c === ",") { record.push(value); value = ""; } else if (c === "\n") {
      endRecord();
      if (records.length % PARSE_CHUNK === 0) { onProgress(i / text.length); await sleep(0); }
    } else if (c !== "\r") value += c;
    i += 1;
  }
  if (value || record.length) endRecord();
  return records.filter((r) => r.some((cell) => cell.trim()));
}

/** The rows as the import takes them, or an Error naming what the header lacks. */
export function toRows(records) {
  const header = (records[0] || []).map((name) => name.trim().toLowerCase().replace(/^\ufeff/, ""));
  const missing = ["email", "name"].filter((name) => !header.includes(name));
  if (missing.length) throw new Error(`The first line must name the columns; ${missing.join(" and ")} ${missing.length === 1 ? "is" : "are"} missing. Expected: ${COLUMNS.join(",")}.`);
  const at = Object.fromEntries(COLUMNS.map((name) => [name, header.indexOf(name)]));
  return records.slice(1).map((cells) => Object.fromEntries(COLUMNS.map((name) => [name, at[name] < 0 ? "" : (cells[at[name]] || "")])));
}

const lineOf = (row) => row + 2; // the header is line 1

/** Rows whose email or login name is on an earlier row of the file (the gateway sees one batch at a time). */
function repeatedRows(rows) {
  const first = { email: new Map(), login_name: new Map() };
  const repeated = [];
  rows.forEach((row, index) => {
    for (const [column, what] of [["email", "email"], ["login_name", "login name"]]) {
      const value = column === "email" ? row.email.trim().toLowerCase() : row.login_name.trim();
      if (!value) continue;
      if (first[column].has(value)) {
        repeated.push({ row: index, outcome: "invalid", code: `${column}_repeated`, detail: `This ${what} is on line ${lineOf(first[column].get(value))}.` });
        return;
      }
      first[column].set(value, index);
    }
  });
  return repeated;
}

/** Sends the rows not repeated in batches; `onBatch(done)` after each. Every row's result, in order, and the consistency tokens. */
async function send(api, rows, dryRun, onBatch) {
  const repeated = repeatedRows(rows);
  const skipped = new Set(repeated.map((r) => r.row));
  const sent = rows.map((row, index) => index).filter((index) => !skipped.has(index));
  const results = [...repeated];
  const tokens = [];
  for (let start = 0; start < sent.length; start += BATCH) {
    const batch = sent.slice(start, start + BATCH);
    const answer = await api.post("/users/import", { rows: batch.map((index) => rows[index]), dry_run: dryRun });
    answer.rows.forEach((r) => results.push({ ...r, row: batch[r.row] }));
    if (answer.consistency_token) tokens.push(answer.consistency_token);
    onBatch(Math.min(start + BATCH, sent.length) + repeated.length);
  }
  return { results: results.sort((a, b) => a.row - b.row), tokens };
}

function problemsList(results, rows) {
  const problems = results.filter((r) => r.outcome === "invalid" || r.outcome === "refused");
  if (!problems.length) return null;
  return h("div", {},
    h("h3", {}, `Rows that will not be imported (${problems.length})`),
    h("ul", { class: "failures" }, problems.slice(0, SHOWN_PROBLEMS).map((r) => h("li", {},
      `Line ${lineOf(r.row)}${rows[r.row].email ? ` (${rows[r.row].email})` : ""}: ${r.detail}`))),
    problems.length > SHOWN_PROBLEMS ? h("p", {}, `…and ${problems.length - SHOWN_PROBLEMS} more.`) : null);
}

/** The import dialog: choose a file, preview, import. `onImported(tokens, text)` once rows were created. */
export function importDialog(api, onImported) {
  const titleId = uid("dialog-title");
  const file = h("input", { type: "file", accept: ".csv,text/csv", name: "file" });
  const error = errorBox();
  const bar = h("progress", { max: "1", value: "0", hidden: true, "aria-label": "Progress" });
  const status = h("p", { role: "status", class: "progress-text" });
  const preview = h("div", { class: "import-preview" });
  const go = h("button", { type: "submit" }, "Preview");
  const cancel = h("button", { type: "button", class: "secondary", onclick: () => dialog.close() }, "Cancel");
  const form = h("form", { novalidate: true },
    h("h2", { id: titleId }, "Import users from CSV"),
    h("p", {}, `The first line names the columns: ${COLUMNS.join(", ")} (password and login_name may be empty: a user without a password is mailed a link to set one). Nothing is written until you have seen the preview and chosen Import.`),
    field("CSV file", file), error, bar, status, preview, h("div", { class: "actions" }, go, cancel));
  const dialog = h("dialog", { class: "dialog wide", "aria-labelledby": titleId }, form);
  let rows = null;
  let creatable = 0;

  const progress = (done, total, text) => { bar.hidden = false; bar.max = total; bar.value = done; status.textContent = text; };
  file.addEventListener("change", () => { rows = null; preview.replaceChildren(); go.textContent = "Preview"; status.textContent = ""; bar.hidden = true; });

  async function previewFile() {
    const chosen = file.files[0];
    if (!chosen) throw new Error("Choose a CSV file first.");
    progress(0, 1, "Reading the file…");
    const records = await parseCsv(await chosen.text(), (part) => progress(part, 1, "Reading the file…"));
    rows = toRows(records);
    if (!rows.length) throw new Error("The file has no rows under its header.");
    const { results } = await send(api, rows, true, (done) => progress(done, rows.length, `Checked ${done} of ${rows.length} rows…`));
    creatable = results.filter((r) => r.outcome === "create").length;
    const mailed = results.filter((r) => r.outcome === "create" && r.reset_link_mailed).length;
    status.textContent = `Preview: ${plural(rows.length, "row")} read. ${plural(creatable, "user")} would be created`
      + `${mailed ? ` (${mailed} of them mailed a link to set a password)` : ""}; ${plural(rows.length - creatable, "row")} with problems would be skipped. Nothing has been written yet.`;
    preview.replaceChildren(problemsList(results, rows) || "");
    go.textContent = creatable ? `Import ${plural(creatable, "user")}` : "Preview";
    go.disabled = false;
    if (!creatable) rows = null;
  }

  async function importRows() {
    const { results, tokens } = await send(api, rows, false, (done) => progress(done, rows.length, `Imported ${done} of ${rows.length} rows…`));
    const created = results.filter((r) => r.outcome === "created").length;
    const text = `Import finished: ${plural(created, "user")} created, ${plural(rows.length - created, "row")} skipped.`;
    status.textContent = text;
    preview.replaceChildren(problemsList(results, rows) || "");
    rows = null;
    go.textContent = "Preview";
    cancel.textContent = "Close";
    onImported(tokens, text);
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.clear();
    go.disabled = true;
    file.disabled = true;
    try {
      await (rows ? importRows() : previewFile());
    } catch (failure) {
      rows = null;
      go.textContent = "Preview";
      error.show(failure.message);
    } finally {
      go.disabled = false;
      file.disabled = false;
    }
  });
  dialog.addEventListener("close", () => dialog.remove());
  document.body.append(dialog);
  dialog.showModal();
  file.focus();
}
