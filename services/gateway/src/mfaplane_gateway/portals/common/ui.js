// Small DOM helpers shared by the reference portals. Text always goes in as text, never parsed as HTML.

const SVG_NS = "http://www.w3.org/2000/svg";

function fill(el, attrs, children) {
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") el.addEventListener(name.slice(2), value);
    else el.setAttribute(name, value === true ? "" : String(value));
  }
  el.append(...children.flat(Infinity).filter((c) => c !== null && c !== undefined && c !== false));
  return el;
}

/** h("p", {class: "hint"}, "text", otherNode): an element; strings become text nodes. */
export const h = (tag, attrs, ...children) => fill(document.createElement(tag), attrs, children);

/** The same for inline SVG icons. */
export const s = (tag, attrs, ...children) => fill(document.createElementNS(SVG_NS, tag), attrs, children);

let ids = 0;
export const uid = (prefix) => `${prefix}-${++ids}`;

/** A labelled form field: label, control, optional help text linked with aria-describedby. */
export function field(labelText, control, help) {
  control.id ||= uid("field");
  const parts = [h("label", { for: control.id }, labelText), control];
  if (help) {
    const helpEl = h("p", { class: "help", id: uid("help") }, help);
    control.setAttribute("aria-describedby", helpEl.id);
    parts.push(helpEl);
  }
  return h("div", { class: "field" }, parts);
}

/** A live region for errors (role=alert) with show/clear. */
export function errorBox() {
  const el = h("p", { class: "error", role: "alert" });
  el.show = (text) => { el.textContent = text; };
  el.clear = () => { el.textContent = ""; };
  return el;
}

/** Disables a form's buttons while a request runs (its submit button stays disabled while the form is held). */
export async function busy(form, work) {
  const buttons = [...form.querySelectorAll("button")];
  form.setAttribute("aria-busy", "true");
  buttons.forEach((b) => { b.disabled = true; });
  try {
    return await work();
  } finally {
    form.removeAttribute("aria-busy");
    buttons.forEach((b) => { b.disabled = "held" in form.dataset && b.type === "submit"; });
  }
}

/**
 * Holds a code form after too many wrong codes: its fields and submit button are disabled until `until`
 * (a Date; null: until an administrator helps), then `onRelease` runs. Cancel and other buttons stay usable.
 */
export function hold(form, until, onRelease) {
  const controls = () => [...form.querySelectorAll("input, button[type=submit]")];
  form.dataset.held = "";
  controls().forEach((c) => { c.disabled = true; });
  if (!until) return;
  setTimeout(() => {
    delete form.dataset.held;
    controls().forEach((c) => { c.disabled = false; });
    if (onRelease) onRelease();
  }, Math.max(0, until.getTime() - Date.now()));
}

/** Moves focus to a freshly shown step's heading so keyboard and screen reader users start there. */
export function focusHeading(root) {
  const heading = root.querySelector("h1, h2");
  if (heading) {
    heading.setAttribute("tabindex", "-1");
    heading.focus();
  }
}

// With the time zone: a deadline is read by people in several, and the browser's may not be the reader's.
const dateFormat = new Intl.DateTimeFormat(undefined, {
  year: "numeric", month: "short", day: "numeric", hour: "numeric", minute: "2-digit", timeZoneName: "short" });
const timeFormat = new Intl.DateTimeFormat(undefined, { hour: "numeric", minute: "2-digit", timeZoneName: "short" });
export const formatDate = (iso) => (iso ? dateFormat.format(new Date(iso)) : "—");

/** A moment soon to come: its time alone when it is today, else its date and time. */
export function formatMoment(date) {
  return date.toDateString() === new Date().toDateString() ? timeFormat.format(date) : dateFormat.format(date);
}

/** When a refusal with `retry_after` seconds (a throttle's) says to come back, as a Date. */
export const retryAt = (failure) => new Date(Date.now() + Number(failure.problem?.retry_after || 60) * 1000);

export const plural = (n, word, many = `${word}s`) => `${n} ${n === 1 ? word : many}`;

/** 6 days 23 hours; 5 hours 3 minutes; less than a minute. */
export function formatDuration(seconds) {
  if (seconds === null || seconds === undefined) return "—";
  if (seconds < 60) return "less than a minute";
  const days = Math.floor(seconds / 86400);
  const hours = Math.floor((seconds % 86400) / 3600);
  const minutes = Math.floor((seconds % 3600) / 60);
  if (days) return hours ? `${plural(days, "day")} ${plural(hours, "hour")}` : plural(days, "day");
  if (hours) return minutes ? `${plural(hours, "hour")} ${plural(minutes, "minute")}` : plural(hours, "hour");
  return plural(minutes, "minute");
}

export const days = (n) => plural(n, "day");

/** "1 day remains", "7 days remain". */
export const daysRemain = (n) => `${days(n)} ${n === 1 ? "remains" : "remain"}`;

/** Copies text and says so in a live region next to the button. */
export function copyButton(label, text) {
  const said = h("span", { class: "hint", role: "status" });
  const button = h("button", { type: "button", class: "secondary" }, label);
  button.addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText(text());
      said.textContent = "Copied.";
    } catch {
      said.textContent = "Copying is not allowed here: select the text and copy it yourself.";
    }
  });
  return h("span", {}, button, " ", said);
}

/**
 * The TOTP hint: codes change every 30 s and are accepted for about a minute, so near the end of a
 * code's period the page asks to wait for a fresh one. Uses the device's clock, like the app does.
 */
export function codeTimer() {
  const count = h("span", { "aria-hidden": "true" });
  const warning = h("span", { class: "warning", role: "status" });
  const el = h("p", { class: "hint code-timer" },
    "Codes change every 30 seconds. ", count, " ", warning);
  const tick = () => {
    const left = 30 - (Math.floor(Date.now() / 1000) % 30);
    count.textContent = `The current code changes in ${left} s.`;
    const near = left <= 7;
    el.classList.toggle("near-end", near);
    const text = near ? "It is about to change: wait for a fresh code before you type it." : "";
    if (warning.textContent !== text) warning.textContent = text;
  };
  tick();
  const timer = setInterval(tick, 1000);
  return { el, stop: () => clearInterval(timer) };
}

/** The product mark in the banner (decorative). */
export function logo() {
  return s("svg", { viewBox: "0 0 24 24", "aria-hidden": "true", focusable: "false" },
    s("path", { d: "M12 2 4 5v6c0 5 3.4 9.4 8 11 4.6-1.6 8-6 8-11V5z", fill: "#fff" }),
    s("path", { d: "M9 11V9a3 3 0 0 1 6 0v2M8 11h8v6H8z", fill: "none", stroke: "#083b67", "stroke-width": "1.6" }));
}

/** What a reference portal shows when the gateway has no portal API key for it; `what` names the portal. */
export function notConfigured(root, what) {
  root.replaceChildren(h("section", { class: "card" },
    h("h1", {}, `${what} is not configured`),
    h("p", {}, "The gateway has no portal API key for its reference portals. An operator sets ",
      h("code", {}, "REFERENCE_PORTAL_API_KEY"), " (a key with the portal role) on the gateway to enable it.")));
}
