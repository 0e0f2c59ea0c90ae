// Admin console widgets: the MFA status padlock with its tooltip, a "more actions" menu button and
// the action dialog with the enrollment period field.

import { errorBox, field, formatDate, formatDuration, h, s, uid } from "./common/ui.js";

/** Rule 12's statuses, as the padlock shows them. */
export const STATUSES = {
  active: { label: "MFA active", detail: "Set up and required.", open: false, tone: "ok", mark: "check" },
  enrolling: { label: "Enrolling", detail: "Required, not set up yet: within the enrollment period.", open: true, tone: "warn", mark: "clock" },
  expired: { label: "Enrollment expired", detail: "Required, not set up, deadline passed: locked out of the user portal.", open: false, tone: "bad", mark: "bang" },
  configured_not_required: { label: "Set up, not required", detail: "MFA is set up but not required for the user portal.", open: false, tone: "info", mark: null },
  required_no_period: { label: "Required, no period", detail: "Required with no enrollment period: must set up at the next sign-in.", open: true, tone: "bad", mark: "bang" },
  none: { label: "Not required", detail: "MFA is not required and not set up.", open: true, tone: "idle", mark: null },
};
export const STATUS_ORDER = ["active", "enrolling", "expired", "configured_not_required", "required_no_period", "none"];

const MARKS = {
  check: () => s("path", { d: "M8.6 16.3l2.3 2.3 4.6-4.7", fill: "none", stroke: "#fff", "stroke-width": "1.9", "stroke-linecap": "round", "stroke-linejoin": "round" }),
  bang: () => [s("path", { d: "M12 13.6v3.2", stroke: "#fff", "stroke-width": "2", "stroke-linecap": "round" }),
    s("circle", { cx: "12", cy: "19.2", r: "1.1", fill: "#fff" })],
  clock: () => [s("circle", { cx: "12", cy: "16.3", r: "3.1", fill: "none", stroke: "#fff", "stroke-width": "1.5" }),
    s("path", { d: "M12 14.6v1.8l1.2.8", fill: "none", stroke: "#fff", "stroke-width": "1.3", "stroke-linecap": "round" })],
};

/** The padlock icon alone (decorative: its meaning is always given as text beside it). */
export function padlockIcon(status) {
  const look = STATUSES[status] || STATUSES.none;
  const shackle = look.open ? "M7.5 11V7.5a4.5 4.5 0 0 1 8.9-1" : "M7.5 11V7.5a4.5 4.5 0 0 1 9 0V11";
  return s("svg", { viewBox: "0 0 24 24", width: "20", height: "20", class: `padlock tone-${look.tone}`, "aria-hidden": "true", focusable: "false" },
    s("path", { d: shackle, fill: "none", stroke: "currentColor", "stroke-width": "2.2", "stroke-linecap": "round" }),
    s("rect", { x: "4.5", y: "11", width: "15", height: "10.5", rx: "2", fill: "currentColor" }),
    look.mark ? MARKS[look.mark]() : null);
}

/** Whether the deadline means anything now: only while required and not set up (enrolling, expired). */
export const hasPeriod = (user) => user.status === "enrolling" || user.status === "expired";

/** The tooltip's lines: the status, what it means, the deadline and the time remaining. */
export function statusDetails(user) {
  const look = STATUSES[user.status] || STATUSES.none;
  const lines = [look.label, look.detail];
  if (user.deadline && hasPeriod(user)) lines.push(`${user.status === "expired" ? "Deadline passed" : "Deadline"}: ${formatDate(user.deadline)}`);
  if (user.time_remaining_seconds !== null && user.time_remaining_seconds !== undefined) {
    lines.push(`Time remaining: ${formatDuration(user.time_remaining_seconds)}`);
  }
  return lines;
}

/** The status indicator: padlock and short label; hovering or focusing it shows the details. */
export function statusBadge(user) {
  const look = STATUSES[user.status] || STATUSES.none;
  const tipId = uid("tip");
  const [, ...more] = statusDetails(user);
  const tip = h("span", { class: "tooltip", role: "tooltip", id: tipId }, more.map((line) => h("span", { class: "line" }, line)));
  const badge = h("span", { class: `status-badge tone-${look.tone}`, tabindex: "0", "aria-describedby": tipId, "data-status": user.status },
    padlockIcon(user.status), h("span", { class: "status-text" }, look.label), tip);
  // WCAG 1.4.13: Escape hides the tooltip without moving the pointer or focus.
  badge.addEventListener("keydown", (event) => { if (event.key === "Escape") badge.classList.add("tip-dismissed"); });
  badge.addEventListener("mouseleave", () => badge.classList.remove("tip-dismissed"));
  badge.addEventListener("blur", () => badge.classList.remove("tip-dismissed"));
  return badge;
}

/**
 * The padlock as a menu button: the status and its details (tooltip), opening `items` (the MFA actions
 * that fit the status). `name`: whose status it is, for the button's accessible name.
 */
export function statusMenu(user, name, items) {
  const look = STATUSES[user.status] || STATUSES.none;
  const tipId = uid("tip");
  const [, ...more] = statusDetails(user);
  const face = [padlockIcon(user.status), h("span", { class: "status-text" }, look.label),
    h("span", { class: "tooltip", role: "tooltip", id: tipId }, more.map((line) => h("span", { class: "line" }, line)))];
  const menu = menuButton(`MFA options for ${name}`, items, { face, buttonClass: `status-badge status-menu tone-${look.tone}` });
  const { button } = menu;
  button.setAttribute("aria-describedby", tipId);
  button.setAttribute("data-status", user.status);
  button.setAttribute("aria-label", `${look.label}: MFA options for ${name}`);
  // WCAG 1.4.13, as for the badge: Escape hides the tooltip.
  button.addEventListener("keydown", (event) => { if (event.key === "Escape") button.classList.add("tip-dismissed"); });
  button.addEventListener("mouseleave", () => button.classList.remove("tip-dismissed"));
  button.addEventListener("blur", () => button.classList.remove("tip-dismissed"));
  return menu;
}

/**
 * A menu button (ARIA menu pattern): arrows move, Escape closes, focus returns to the button. `face`: what
 * the button shows instead of `label` (which then names the menu only).
 */
export function menuButton(label, items, { face, buttonClass = "secondary menu-button" } = {}) {
  const menuId = uid("menu");
  const button = h("button", { type: "button", class: buttonClass, "aria-haspopup": "menu", "aria-expanded": "false", "aria-controls": menuId },
    face || label, s("svg", { viewBox: "0 0 10 6", width: "10", height: "6", "aria-hidden": "true", focusable: "false" }, s("path", { d: "M0 0h10L5 6z", fill: "currentColor" })));
  const entries = items.map((item) => h("button", { type: "button", role: "menuitem", tabindex: "-1", class: "menu-item" }, item.label));
  const menu = h("div", { role: "menu", id: menuId, class: "menu", "aria-label": label, hidden: true }, entries);
  const wrap = h("div", { class: "menu-wrap" }, button, menu);
  const isOpen = () => !menu.hidden;
  const open = (index = 0) => {
    menu.hidden = false;
    button.setAttribute("aria-expanded", "true");
    entries[(index + entries.length) % entries.length].focus();
  };
  const close = (refocus = true) => {
    if (!isOpen()) return;
    menu.hidden = true;
    button.setAttribute("aria-expanded", "false");
    if (refocus) button.focus();
  };
  button.addEventListener("click", () => (isOpen() ? close() : open()));
  button.addEventListener("keydown", (event) => {
    if (event.key === "ArrowDown") { event.preventDefault(); open(0); }
    if (event.key === "ArrowUp") { event.preventDefault(); open(-1); }
  });
  menu.addEventListener("keydown", (event) => {
    const at = entries.indexOf(document.activeElement);
    const moves = { ArrowDown: at + 1, ArrowUp: at - 1, Home: 0, End: -1 };
    if (event.key in moves) {
      event.preventDefault();
      entries[(moves[event.key] + entries.length) % entries.length].focus();
    } else if (event.key === "Escape") {
      event.preventDefault();
      close();
    } else if (event.key === "Tab") {
      close(false);
    }
  });
  entries.forEach((entry, i) => entry.addEventListener("click", () => { close(); items[i].onSelect(); }));
  const outside = (event) => {
    if (!wrap.isConnected) document.removeEventListener("click", outside);
    else if (!wrap.contains(event.target)) close(false);
  };
  document.addEventListener("click", outside);
  wrap.button = button;
  return wrap;
}

const DAYS = /^\d{1,3}$/;

/** Reads the enrollment period field: a whole number of days from 1 to 365, or null (and says why). */
export function readDays(input, error) {
  const value = input.value.trim();
  const n = Number(value);
  if (!DAYS.test(value) || n < 1 || n > 365) {
    input.setAttribute("aria-invalid", "true");
    error.show("Enter the enrollment period as a whole number of days from 1 to 365.");
    input.focus();
    return null;
  }
  input.removeAttribute("aria-invalid");
  return n;
}

/** The enrollment period field (1 to 365 days, default 7). */
export function daysInput() {
  return h("input", { type: "number", name: "enrollment_days", min: "1", max: "365", step: "1", value: "7", inputmode: "numeric", required: true, class: "days" });
}

/**
 * A modal dialog that confirms an action, with the enrollment period field when `needsDays` and any other
 * `content` (its first input or button gets the focus). `onConfirm(days)` runs the action; a refusal (or an
 * Error it throws) is shown in the dialog, which stays open. `cancelLabel: null`: no Cancel button (a
 * dialog that only shows something); `wide`: room for commands; `returnFocus()`: where focus goes once
 * closed, when not back where it was (a row the action re-rendered).
 */
export function actionDialog({ title, text, confirmLabel, needsDays, danger, content, cancelLabel = "Cancel", wide, returnFocus, onConfirm }) {
  const titleId = uid("dialog-title");
  const error = errorBox();
  const input = needsDays ? daysInput() : null;
  const confirm = h("button", { type: "submit", class: danger ? "danger" : null }, confirmLabel);
  const cancel = cancelLabel ? h("button", { type: "button", class: "secondary" }, cancelLabel) : null;
  const form = h("form", { novalidate: true },
    h("h2", { id: titleId }, title), text ? h("p", {}, text) : null,
    input ? field("Enrollment period (days)", input, "From 1 to 365 days, counted from now. The default is 7.") : null,
    content, error, h("div", { class: "actions" }, confirm, cancel));
  const dialog = h("dialog", { class: wide ? "dialog wide" : "dialog", "aria-labelledby": titleId }, form);
  const returnTo = document.activeElement;
  cancel?.addEventListener("click", () => dialog.close());
  dialog.addEventListener("close", () => {
    dialog.remove();
    const target = returnFocus ? returnFocus() : returnTo;
    if (target && target.isConnected) target.focus();
  });
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.clear();
    const days = input ? readDays(input, error) : null;
    if (input && days === null) return;
    confirm.disabled = true;
    try {
      await onConfirm(days);
      dialog.close();
    } catch (failure) {
      error.show(failure.message);
    } finally {
      confirm.disabled = false;
    }
  });
  document.body.append(dialog);
  dialog.showModal();
  const first = input || content?.querySelector?.("input, button") || confirm;
  first.focus();
  if (first instanceof HTMLInputElement) first.select();
  return dialog;
}

export const sleep = (ms) => new Promise((resolve) => { setTimeout(resolve, ms); });

const NOT_YET = new Set(["projection_behind", "operation_running"]);
const READ_BACK_TRIES = 4;
const READ_BACK_MAX_WAIT_MS = 5000;

/**
 * `read(consistencyToken)`: a read as of a change. The gateway waits a few seconds for a change to show,
 * then answers 503 with a Retry-After: read again after it, and after READ_BACK_TRIES such answers read
 * without the token. A change slow to show is no error; a later refresh shows it.
 */
export async function asOf(consistencyToken, read) {
  for (let attempt = 1; consistencyToken && attempt <= READ_BACK_TRIES; attempt += 1) {
    try {
      return await read(consistencyToken);
    } catch (failure) {
      if (!NOT_YET.has(failure.code)) throw failure;
      await sleep(Math.min(1000 * (failure.problem.retry_after || 1), READ_BACK_MAX_WAIT_MS));
    }
  }
  return read(undefined);
}

/** Re-renders rows without losing keyboard focus: the focused control is found again by its row and position. */
export function keepingFocus(tbody, rowKey, render) {
  const active = document.activeElement;
  const row = active && tbody.contains(active) ? active.closest("tr") : null;
  const key = row ? row.getAttribute(rowKey) : null;
  const index = row ? [...row.querySelectorAll("a, button, input, [tabindex]")].indexOf(active) : -1;
  render();
  if (key === null) return;
  const again = tbody.querySelector(`tr[${rowKey}="${CSS.escape(key)}"]`);
  const target = again ? again.querySelectorAll("a, button, input, [tabindex]")[index] : null;
  if (target) target.focus();
}
