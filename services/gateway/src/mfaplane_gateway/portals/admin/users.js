// Users: the list with MFA status, filters, counts and paging; bulk actions; one user's details and history.

import { busy, errorBox, field, focusHeading, formatDate, formatDuration, h } from "./common/ui.js";
import {
  STATUSES, STATUS_ORDER, actionDialog, asOf, hasPeriod, keepingFocus, menuButton, padlockIcon, sleep, statusBadge,
  statusDetails,
} from "./widgets.js";

const PAGE_SIZE = 25;
const POLL_MS = 400;
const ACTIONS = {
  require: { menu: "Require MFA on User Portal", title: "Require MFA", verb: "Require", past: "MFA required",
    many: "The selected users must set up MFA within the enrollment period; each is emailed the deadline and a link to the user portal.",
    one: "The user must set up MFA within the enrollment period and is emailed the deadline and a link to the user portal." },
  extend: { menu: "Extend enrollment period", title: "Extend the enrollment period", verb: "Extend", past: "Enrollment extended",
    many: "A new enrollment period starts now for each selected user who has not set up MFA yet. They are emailed the new deadline.",
    one: "A new enrollment period starts now (only while MFA is not set up). The user is emailed the new deadline." },
  reset: { menu: "Reset MFA", title: "Reset MFA", verb: "Reset", past: "MFA reset", danger: true,
    many: "Clears each selected user's authenticator key and starts a new enrollment period from now. They are emailed and must set up MFA again.",
    one: "Clears the user's authenticator key and starts a new enrollment period from now. The user is emailed and must set up MFA again." },
  "remove-requirement": { menu: "Remove MFA requirement", title: "Remove the MFA requirement", verb: "Remove requirement",
    past: "MFA requirement removed", one: "The user no longer needs MFA for the user portal. A key already set up is kept." },
};
const REASONS = {
  already_set_up: "MFA is already set up (reset it instead)",
  not_required: "MFA is not required for this user",
  user_not_found: "no such user",
  replayed_request: "already applied",
};

// The list's filters, page and selection survive a visit to a user's details.
const state = { q: "", status: "", required: "", mfa_active: "", cursors: [null], page: 0, selected: new Map() };
const known = new Map(); // user id -> "Name <email>", for naming bulk failures

const filterQuery = ({ withStatus = true } = {}) => ({
  q: state.q, status: withStatus ? state.status : "", required: state.required, mfa_active: state.mfa_active,
});

function yesNo(value) { return value ? "Yes" : "No"; }

function deadlineCell(user) {
  if (!user.deadline || !hasPeriod(user)) return "—";
  const remaining = user.time_remaining_seconds;
  return [h("span", {}, formatDate(user.deadline)),
    remaining !== null && remaining !== undefined ? h("span", { class: "hint block" }, `${formatDuration(remaining)} left`)
      : user.status === "expired" ? h("span", { class: "hint block" }, "passed") : null];
}

function select(label, name, options) {
  const control = h("select", { name }, options.map(([value, text]) => h("option", { value, selected: state[name] === value }, text)));
  return field(label, control);
}

export function usersView(api, main) {
  const message = h("div", { class: "status", role: "status" });
  const error = errorBox();
  const counts = h("ul", { class: "counts", "aria-label": "Users by MFA status (select one to filter)" });
  const tbody = h("tbody");
  const selectAll = h("input", { type: "checkbox", "aria-label": "Select every user on this page" });
  const selectionText = h("span", { class: "selection", role: "status" });
  const pageText = h("span", { class: "page-number" });
  const previous = h("button", { type: "button", class: "secondary" }, "Previous page");
  const next = h("button", { type: "button", class: "secondary" }, "Next page");
  const progress = h("section", { class: "progress-panel", "aria-labelledby": "progress-heading", hidden: true });
  let rows = [];

  const search = h("input", { type: "search", name: "q", value: state.q, autocomplete: "off" });
  const filters = h("form", { role: "search", class: "filters", "aria-label": "Filter users" },
    field("Search name or email", search),
    select("MFA status", "status", [["", "Any status"], ...STATUS_ORDER.map((st) => [st, STATUSES[st].label])]),
    select("Required", "required", [["", "Any"], ["true", "Required"], ["false", "Not required"]]),
    select("MFA active", "mfa_active", [["", "Any"], ["true", "Active (set up)"], ["false", "Inactive (not set up)"]]),
    h("div", { class: "filter-actions" }, h("button", { type: "submit" }, "Apply filters"),
      h("button", { type: "button", class: "secondary", onclick: () => { filters.reset(); search.value = ""; filters.querySelectorAll("select").forEach((el) => { el.value = ""; }); apply(); } }, "Clear filters")));
  filters.addEventListener("submit", (event) => { event.preventDefault(); apply(); });

  function apply() {
    const data = new FormData(filters);
    for (const name of ["q", "status", "required", "mfa_active"]) state[name] = String(data.get(name) || "").trim();
    state.cursors = [null];
    state.page = 0;
    load();
  }

  const actions = menuButton("More actions", ["require", "extend", "reset"].map((action) => ({
    label: ACTIONS[action].menu, onSelect: () => bulkDialog(action),
  })));

  function updateSelection() {
    const n = state.selected.size;
    selectionText.textContent = n ? `${n} user${n === 1 ? "" : "s"} selected` : "Select users to act on them";
    actions.button.disabled = n === 0;
    clear.hidden = n === 0;
    const onPage = rows.filter((u) => state.selected.has(u.id)).length;
    selectAll.checked = rows.length > 0 && onPage === rows.length;
    selectAll.indeterminate = onPage > 0 && onPage < rows.length;
  }
  const clear = h("button", { type: "button", class: "link", hidden: true, onclick: () => { state.selected.clear(); render(); } }, "Clear selection");

  selectAll.addEventListener("change", () => {
    for (const user of rows) {
      if (selectAll.checked) state.selected.set(user.id, user); else state.selected.delete(user.id);
    }
    render();
  });
  previous.addEventListener("click", () => { state.page -= 1; load(); });
  next.addEventListener("click", () => { state.page += 1; load(); });

  function render() {
    keepingFocus(tbody, "data-user-id", renderRows);
    updateSelection();
  }

  function renderRows() {
    tbody.replaceChildren(...(rows.length ? rows.map((user) => {
      const box = h("input", { type: "checkbox", "aria-label": `Select ${user.name} (${user.email})`, checked: state.selected.has(user.id) });
      box.addEventListener("change", () => {
        if (box.checked) state.selected.set(user.id, user); else state.selected.delete(user.id);
        updateSelection();
      });
      return h("tr", { "data-user-id": user.id },
        h("td", {}, box),
        h("td", {}, h("a", { href: `#/users/${user.id}` }, user.name)),
        h("td", {}, user.email),
        h("td", {}, statusBadge(user)),
        h("td", {}, yesNo(user.required)),
        h("td", {}, deadlineCell(user)));
    }) : [h("tr", {}, h("td", { colspan: "6", class: "empty" }, "No users match these filters."))]));
  }

  async function loadCounts(consistentWith) {
    const numbers = await api.get("/users/status-counts", { ...filterQuery({ withStatus: false }), consistent_with: consistentWith });
    const total = Object.values(numbers).reduce((a, b) => a + b, 0);
    const choose = (status) => () => {
      state.status = state.status === status ? "" : status;
      filters.elements.status.value = state.status;
      state.cursors = [null];
      state.page = 0;
      load();
    };
    counts.replaceChildren(
      h("li", {}, h("button", { type: "button", class: "count", "aria-pressed": String(state.status === ""), onclick: choose("") },
        h("span", { class: "count-label" }, "All users"), h("span", { class: "count-number" }, String(total)))),
      ...STATUS_ORDER.map((status) => h("li", {}, h("button", {
        type: "button", class: "count", "aria-pressed": String(state.status === status), onclick: choose(status), "data-status": status,
      }, padlockIcon(status), h("span", { class: "count-label" }, STATUSES[status].label),
      h("span", { class: "count-number" }, String(numbers[status] ?? 0))))));
  }

  /** The page and the counts; after a change, as of that change (its consistency token). */
  async function load(consistentWith) {
    error.clear();
    try {
      const [page] = await asOf(consistentWith, (token) => Promise.all([
        api.get("/users", { ...filterQuery(), limit: PAGE_SIZE, cursor: state.cursors[state.page], consistent_with: token }),
        loadCounts(token),
      ]));
      rows = page.items;
      rows.forEach((user) => known.set(user.id, `${user.name} <${user.email}>`));
      state.cursors[state.page + 1] = page.next_cursor;
      state.cursors.length = state.page + 2;
      previous.disabled = state.page === 0;
      next.disabled = !page.next_cursor;
      pageText.textContent = `Page ${state.page + 1}`;
      render();
    } catch (failure) {
      if (failure.status !== 401) error.show(`The users could not be loaded: ${failure.message}`);
    }
  }

  function bulkDialog(action) {
    const spec = ACTIONS[action];
    const ids = [...state.selected.keys()];
    const who = `${ids.length} selected user${ids.length === 1 ? "" : "s"}`;
    actionDialog({
      title: `${spec.title} for ${who}`, text: spec.many, confirmLabel: spec.verb, needsDays: true, danger: spec.danger,
      onConfirm: async (days) => {
        const operation = await api.post("/users/mfa/bulk", { action, enrollment_days: days, user_ids: ids });
        state.selected.clear();
        render();
        track(operation, spec);
      },
    });
  }

  /** Shows a bulk operation's progress and failures until it completes. */
  async function track(operation, spec) {
    const heading = h("h2", { id: "progress-heading", tabindex: "-1" }, `${spec.title}: in progress`);
    const bar = h("progress", { max: String(operation.total), value: "0", "aria-labelledby": "progress-heading" });
    const text = h("p", { class: "progress-text", "aria-live": "polite" });
    const failures = h("ul", { class: "failures" });
    progress.replaceChildren(heading, bar, text, h("div", { "aria-live": "polite" }, failures));
    progress.hidden = false;
    heading.focus();
    let op = operation;
    for (;;) {
      const finished = op.done + op.failed.length;
      bar.value = finished;
      text.textContent = `${op.done} of ${op.total} done, ${op.failed.length} failed.`;
      failures.replaceChildren(...op.failed.map((f) => h("li", {}, `${known.get(f.user_id) || f.user_id}: ${REASONS[f.reason] || f.reason}`)));
      if (op.state === "completed") break;
      await sleep(POLL_MS);
      if (!progress.isConnected) return;
      try {
        op = await api.get(`/bulk-operations/${op.id}`);
      } catch (failure) {
        text.textContent = `Progress is not available right now: ${failure.message}`;
        return;
      }
    }
    heading.textContent = `${spec.title}: completed`;
    text.textContent = `Completed: ${op.changed} of ${op.total} changed`
      + (op.unchanged ? `, ${op.unchanged} already so` : "") + `, ${op.failed.length} failed.`;
    progress.classList.toggle("has-failures", op.failed.length > 0);
    if (progress.isConnected) await load(op.consistency_token);
  }

  const table = h("table", { class: "users" },
    h("caption", { class: "visually-hidden" }, "Users with their MFA status. Select users for bulk actions."),
    h("thead", {}, h("tr", {},
      h("th", { scope: "col", class: "check" }, selectAll), h("th", { scope: "col" }, "Name"), h("th", { scope: "col" }, "Email"),
      h("th", { scope: "col" }, "MFA status"), h("th", { scope: "col" }, "Required"), h("th", { scope: "col" }, "Deadline"))),
    tbody);
  const view = h("div", { class: "view" },
    h("h1", {}, "Users"),
    counts, filters,
    h("div", { class: "toolbar" }, selectionText, clear, h("span", { class: "spacer" }), actions,
      h("button", { type: "button", class: "secondary", onclick: () => load() }, "Refresh")),
    message, error, progress,
    h("div", { class: "table-wrap" }, table),
    h("nav", { class: "pager", "aria-label": "Pages of users" }, previous, pageText, next));
  main.replaceChildren(view);
  focusHeading(view);
  load();
}

// -- one user -----------------------------------------------------------------------------------

const EVENT_TEXT = {
  UserCreated: () => "User created",
  UserUpdated: () => "Name or email changed",
  UserPasswordChanged: (p) => (p.reset_id ? "Password reset with the mailed link" : "Password changed"),
  UserPasswordResetRequested: (p) => `Password reset link mailed, good once until ${formatDate(p.expires_at)}`,
  UserDeleted: () => "User deleted",
  AdminCreated: () => "Admin created",
  MFARequired: (p) => (p.already_set_up ? "MFA required (already set up: active at once)"
    : p.deadline ? `MFA required: ${p.enrollment_days}-day enrollment period, until ${formatDate(p.deadline)}`
      : "MFA required, with no enrollment period (set up at the next sign-in)"),
  MFARequirementRemoved: () => "MFA requirement removed",
  EnrollmentExtended: (p) => `Enrollment period extended: ${p.enrollment_days} days, until ${formatDate(p.deadline)}`,
  MFAReset: (p) => `MFA reset: new ${p.enrollment_days}-day enrollment period, until ${formatDate(p.deadline)}`,
  TOTPSecretIssued: () => "Setup started: a new key was shown",
  TOTPEnrolled: () => "MFA set up: first code confirmed",
  TOTPVerified: (p) => (p.method === "recovery_code" ? `Signed in with a recovery code (${p.recovery_codes_left} left)` : "Code accepted"),
  TOTPVerificationFailed: () => "Wrong code",
  TOTPThrottled: (p) => `Code attempts paused until ${formatDate(p.until)}`,
  TOTPFactorLocked: () => "Codes locked after too many failures",
  EnrollmentPromptDismissed: (p) => `Setup prompt dismissed (${p.days_remaining} days left)`,
  EnrollmentExpiring: (p) => `Reminder sent: the enrollment period ends ${formatDate(p.deadline)}`,
  EnrollmentExpired: () => "Enrollment period expired: locked out of the user portal",
  UserLoginNameChanged: (p) => (p.login_name ? `Login name on systems set to ${p.login_name}` : "Login name on systems removed"),
  SystemAccessDecided: (p) => `System login${p.login_name ? ` as ${p.login_name}` : ""} to ${p.system_id.slice(0, 8)}`
    + `${p.source ? ` from ${p.source}` : ""}: ${ACCESS_OUTCOME[p.outcome]} (${ACCESS_REASON[p.reason] || p.reason})`,
};

const ACCESS_OUTCOME = { allow: "let in", code_required: "code asked", deny: "refused" };
const ACCESS_REASON = {
  code_verified: "code accepted", mfa_set_up: "MFA is set up", mfa_not_set_up: "MFA not set up",
  mfa_not_enabled_on_system: "MFA is off on this system", invalid_code: "wrong code",
  code_already_used: "code already used", throttled: "code attempts paused", factor_locked: "codes locked",
};

function describeEvent(envelope) {
  const payload = envelope.payload || {};
  const text = (EVENT_TEXT[envelope.type] || (() => envelope.type))(payload);
  return payload.scope === "admin_portal" ? `Admin console: ${text}` : text;
}

function describeActor(actor) {
  const [kind, id] = actor.split(":");
  const short = id ? id.slice(0, 8) : "";
  return { admin: `Admin ${short}`, api_key: `API key ${short}`, user: "The user", system: `Automatic (${id})` }[kind]
    || { "gateway:sign-in": "Sign-in", "gateway:system-agent": "System login", "gateway:password-reset": "Reset link" }[actor]
    || actor;
}

async function history(api, id) {
  const records = await api.ndjson("/audit/events", { principal_id: id });
  const envelopes = records.map((r) => (typeof r.envelope === "string" ? JSON.parse(r.envelope) : r.envelope)).reverse();
  if (!envelopes.length) return h("p", {}, "No events yet.");
  return h("table", { class: "history" },
    h("caption", { class: "visually-hidden" }, "History, newest first"),
    h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "When"), h("th", { scope: "col" }, "What happened"), h("th", { scope: "col" }, "By"))),
    h("tbody", {}, envelopes.map((e) => h("tr", { "data-event-type": e.type },
      h("td", { class: "nowrap" }, formatDate(e.occurred_at)), h("td", {}, describeEvent(e)),
      h("td", { title: e.actor }, describeActor(e.actor))))));
}

export async function userView(api, main, id, { note, loaded } = {}) {
  let user = loaded;
  try {
    user ||= await api.get(`/users/${id}`);
  } catch (failure) {
    main.replaceChildren(h("div", { class: "view" }, h("p", {}, h("a", { href: "#/users" }, "Back to users")),
      h("h1", {}, "User not available"), h("p", { class: "error", role: "alert" }, failure.message)));
    focusHeading(main);
    return;
  }
  const message = h("div", { class: "status", role: "status" }, note || "");
  const historySection = h("section", { "aria-labelledby": "history-heading" }, h("h2", { id: "history-heading" }, "History"),
    h("p", { role: "status" }, "Loading the history…"));

  const run = (action) => () => {
    const spec = ACTIONS[action];
    actionDialog({
      title: `${spec.title} for ${user.name}`, text: spec.one,
      confirmLabel: spec.verb, needsDays: action !== "remove-requirement", danger: spec.danger,
      onConfirm: async (days) => {
        const path = `/users/${id}/mfa/${action}`;
        const receipt = days === null ? await api.json("POST", path) : await api.post(path, { enrollment_days: days });
        const summary = days === null ? `${spec.past}.` : `${spec.past}: ${days}-day enrollment period from now.`;
        const fresh = await asOf(receipt.consistency_token, (token) => api.get(`/users/${id}`, { consistent_with: token }));
        userView(api, main, id, { note: summary, loaded: fresh });
      },
    });
  };
  const options = menuButton("MFA options", ["require", "extend", "reset", "remove-requirement"].map((action) => ({
    label: ACTIONS[action].menu, onSelect: run(action),
  })));
  const details = statusDetails(user);
  const mailReset = h("button", { type: "button", class: "secondary" }, "Mail a password reset link");
  mailReset.addEventListener("click", () => busy(view, async () => {
    try {
      const sent = await api.post(`/users/${id}/password-reset`);
      message.textContent = `A password reset link is on its way to ${user.email}; it works once, until ${formatDate(sent.expires_at)}.`;
    } catch (failure) {
      message.textContent = `No reset link was sent: ${failure.message}`;
    }
  }));
  const view = h("div", { class: "view" },
    h("p", {}, h("a", { href: "#/users" }, "Back to users")),
    h("h1", {}, user.name),
    message,
    h("section", { class: "card wide", "aria-labelledby": "details-heading" },
      h("h2", { id: "details-heading" }, "MFA"),
      h("dl", { class: "details" },
        h("dt", {}, "Email"), h("dd", {}, user.email),
        h("dt", {}, "Login name on systems"), h("dd", {}, user.login_name || "—"),
        h("dt", {}, "MFA status"), h("dd", {}, h("div", { class: "status-line" }, statusBadge(user), options),
          h("p", { class: "hint", id: "status-explained" }, details[1])),
        h("dt", {}, "Required"), h("dd", {}, yesNo(user.required)),
        h("dt", {}, "MFA set up"), h("dd", {}, yesNo(user.mfa_active)),
        h("dt", {}, "Enrollment deadline"), h("dd", {}, hasPeriod(user) ? formatDate(user.deadline) : "—"),
        h("dt", {}, "Time remaining"), h("dd", { id: "time-remaining" }, user.time_remaining_seconds === null ? (user.status === "expired" ? "None: the deadline has passed" : "—") : formatDuration(user.time_remaining_seconds)),
        h("dt", {}, "Enrollment period"), h("dd", {}, user.enrollment_days ? `${user.enrollment_days} days` : "—"),
        h("dt", {}, "Setup prompt dismissed"), h("dd", {}, `${user.dismissals} time${user.dismissals === 1 ? "" : "s"}`),
        h("dt", {}, "Last code accepted"), h("dd", {}, formatDate(user.last_verified_at))),
      h("div", { class: "actions" }, mailReset)),
    historySection);
  main.replaceChildren(view);
  focusHeading(view);
  try {
    historySection.replaceChildren(historySection.firstChild, await history(api, id));
  } catch (failure) {
    historySection.replaceChildren(historySection.firstChild, h("p", { class: "error", role: "alert" }, `The history could not be loaded: ${failure.message}`));
  }
}
