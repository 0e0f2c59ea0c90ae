// Users: the list with MFA status, filters, counts and paging; bulk actions; one user's details and history.

import { busy, errorBox, field, focusHeading, formatDate, formatDuration, h, plural } from "./common/ui.js";
import { loginNameEditor } from "./login_name.js";
import { addUserDialog, deleteUserDialog, editUserDialog } from "./user_forms.js";
import { importDialog } from "./user_import.js";
import {
  STATUSES, STATUS_ORDER, actionDialog, asOf, hasPeriod, keepingFocus, menuButton, padlockIcon, sleep, statusDetails,
  statusMenu,
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
// The MFA actions that fit each status (rule 6: no extend once set up; requiring a user who has set up
// starts no period, MFA is active at once).
const FITTING = {
  none: ["require"],
  enrolling: ["extend", "reset", "remove-requirement"],
  expired: ["extend", "reset", "remove-requirement"],
  required_no_period: ["extend", "reset", "remove-requirement"],
  active: ["reset", "remove-requirement"],
  configured_not_required: ["require", "reset"],
};
const REASONS = {
  already_set_up: "MFA is already set up (reset it instead)",
  not_required: "MFA is not required for this user",
  user_not_found: "no such user",
  replayed_request: "already applied",
};

// The list's filters, page and selection survive a visit to a user's details.
const state = { q: "", status: "", required: "", set_up: "", cursors: [null], page: 0, selected: new Map(), note: "", lastChange: undefined };
const known = new Map(); // user id -> "Name <email>", for naming bulk failures

const filterQuery = ({ withStatus = true } = {}) => ({
  q: state.q, status: withStatus ? state.status : "", required: state.required, set_up: state.set_up,
});

/** The list's filter as the bulk API's selection. */
function selection() {
  const flag = (value) => (value === "" ? undefined : value === "true");
  const chosen = { q: state.q || undefined, status: state.status ? [state.status] : undefined,
    required: flag(state.required), set_up: flag(state.set_up) };
  return Object.fromEntries(Object.entries(chosen).filter(([, value]) => value !== undefined));
}

/** The filter in words, for the admin to check what "every matching user" means. */
function filterWords() {
  const parts = [state.q && `\u201c${state.q}\u201d in name or email`, state.status && `status ${STATUSES[state.status].label}`,
    state.required && (state.required === "true" ? "required" : "not required"),
    state.set_up && (state.set_up === "true" ? "MFA set up" : "MFA not set up")].filter(Boolean);
  return parts.length ? parts.join(", ") : "no filter: every user";
}

/** The dialog for one MFA action on one user; `done(receipt, note)` once applied. */
function mfaDialog(api, user, action, done) {
  const spec = ACTIONS[action];
  const atOnce = action === "require" && user.set_up;
  const needsDays = action !== "remove-requirement" && !atOnce;
  actionDialog({
    title: `${spec.title} for ${user.name}`,
    text: atOnce ? `${user.name} has already set up MFA: it is required, and active, at once. No enrollment period applies.` : spec.one,
    confirmLabel: spec.verb, needsDays, danger: spec.danger,
    onConfirm: async (days) => {
      const path = `/users/${user.id}/mfa/${action}`;
      const receipt = action === "remove-requirement" ? await api.json("POST", path)
        : await api.post(path, days === null ? {} : { enrollment_days: days });
      await done(receipt, days === null ? `${spec.past}.` : `${spec.past}: ${days}-day enrollment period from now.`);
    },
  });
}

/** The padlock, opening the MFA actions that fit the user's status. */
function padlockMenu(api, user, done) {
  return statusMenu(user, user.name, (FITTING[user.status] || []).map((action) => ({
    label: ACTIONS[action].menu, onSelect: () => mfaDialog(api, user, action, done),
  })));
}

/** Saves the users matching the filter as CSV (the same filter as the list). */
async function exportCsv(api) {
  const response = await api.request("GET", "/users.csv", { query: filterQuery() });
  const link = h("a", { href: URL.createObjectURL(await response.blob()), download: "users.csv", hidden: true });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 10_000);
}

function yesNo(value) { return value ? "Yes" : "No"; }

export function deadlineCell(user) {
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
  const message = h("div", { class: "status", role: "status" }, state.note || "");
  state.note = "";
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
  let loads = 0; // only the newest load shows: an older one (waiting for a change to show) may end later
  const tell = (text) => { message.textContent = text; };

  const search = h("input", { type: "search", name: "q", value: state.q, autocomplete: "off" });
  const filters = h("form", { role: "search", class: "filters", "aria-label": "Filter users" },
    field("Search name or email", search),
    select("MFA status", "status", [["", "Any status"], ...STATUS_ORDER.map((st) => [st, STATUSES[st].label])]),
    select("Required", "required", [["", "Any"], ["true", "Required"], ["false", "Not required"]]),
    select("MFA set up", "set_up", [["", "Any"], ["true", "Set up"], ["false", "Not set up"]]),
    h("div", { class: "filter-actions" }, h("button", { type: "submit" }, "Apply filters"),
      h("button", { type: "button", class: "secondary", onclick: () => { filters.reset(); search.value = ""; filters.querySelectorAll("select").forEach((el) => { el.value = ""; }); apply(); } }, "Clear filters")));
  filters.addEventListener("submit", (event) => { event.preventDefault(); apply(); });

  function apply() {
    const data = new FormData(filters);
    for (const name of ["q", "status", "required", "set_up"]) state[name] = String(data.get(name) || "").trim();
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
        h("td", {}, padlockMenu(api, user, async (receipt, note) => { tell(`${user.name}: ${note}`); await load(receipt.consistency_token); })),
        h("td", {}, yesNo(user.required)),
        h("td", {}, deadlineCell(user)));
    }) : [h("tr", {}, h("td", { colspan: "6", class: "empty" }, "No users match these filters."))]));
  }

  function showCounts(numbers) {
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
    const mine = ++loads;
    state.lastChange = consistentWith || state.lastChange;
    error.clear();
    try {
      const [page, numbers] = await asOf(state.lastChange, (token) => Promise.all([
        api.get("/users", { ...filterQuery(), limit: PAGE_SIZE, cursor: state.cursors[state.page], consistent_with: token }),
        api.get("/users/status-counts", { ...filterQuery({ withStatus: false }), consistent_with: token }),
      ]));
      if (mine !== loads) return;
      showCounts(numbers);
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

  const everyMatching = menuButton("Apply to every matching user", ["require", "extend", "reset"].map((action) => ({
    label: ACTIONS[action].menu, onSelect: () => filterDialog(action),
  })));

  /** Asks the period, previews with a dry run (who changes, who is already so, who is refused and why), then runs. */
  function filterDialog(action) {
    const spec = ACTIONS[action];
    const chosen = selection();
    const words = filterWords();
    actionDialog({
      title: `${spec.title} for every user matching the filter`, text: `Filter: ${words}. ${spec.many} Next you see how many users this changes; nothing is written until you confirm.`,
      confirmLabel: "Preview", needsDays: true, danger: spec.danger,
      onConfirm: async (days) => {
        const dry = await api.post("/users/mfa/bulk", { action, enrollment_days: days, filter: chosen, dry_run: true });
        setTimeout(() => confirmFilterDialog(action, days, chosen, words, dry));
      },
    });
  }

  function confirmFilterDialog(action, days, chosen, words, dry) {
    const spec = ACTIONS[action];
    const why = Object.entries(Object.groupBy(dry.refused, (f) => f.reason))
      .map(([reason, list]) => h("li", {}, `${plural(list.length, "user")}: ${REASONS[reason] || reason}`));
    actionDialog({
      title: `${spec.title}: ${plural(dry.would_change.length, "user")} will change`,
      content: h("div", {}, h("p", {}, `Filter: ${words}. Enrollment period: ${plural(days, "day")}.`),
        h("ul", { class: "dry-run" },
          h("li", {}, `${plural(dry.would_change.length, "user")} will change`),
          h("li", {}, `${plural(dry.unchanged.length, "user")} already in that state (left unchanged)`),
          h("li", {}, `${plural(dry.refused.length, "user")} refused`, why.length ? h("ul", {}, why) : null))),
      confirmLabel: dry.would_change.length ? `${spec.verb} ${plural(dry.would_change.length, "user")}` : "Close",
      danger: spec.danger,
      onConfirm: async () => {
        if (!dry.would_change.length) return;
        track(await api.post("/users/mfa/bulk", { action, enrollment_days: days, filter: chosen }), spec);
      },
    });
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
      + (op.unchanged ? `, ${op.unchanged} unchanged (already so)` : "") + `, ${op.failed.length} failed.`;
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
    h("div", { class: "toolbar" },
      h("button", { type: "button", onclick: () => addUserDialog(api, async (token, note) => { tell(note); await load(token); }) }, "Add user"),
      h("button", { type: "button", class: "secondary", onclick: () => importDialog(api, async (tokens, note) => {
        tell(note);
        await load(tokens.length ? tokens.slice(-20) : undefined);
      }) }, "Import from CSV"),
      h("button", { type: "button", class: "secondary", onclick: () => exportCsv(api).catch((failure) => error.show(`The export failed: ${failure.message}`)) }, "Export CSV"),
      h("span", { class: "spacer" }), everyMatching),
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
  UserSessionsEnded: () => "Every session ended",
  AdminCreated: () => "Admin created",
  AdminPasswordChanged: (p) => (p.reset_id ? "Password set with the mailed link" : "Password changed"),
  AdminPasswordResetRequested: (p) => `Password link mailed, good once until ${formatDate(p.expires_at)}`,
  AdminSessionsEnded: () => "Every session ended",
  AdminDeleted: () => "Admin removed",
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
  RecoveryCodesRegenerated: (p) => `New recovery codes made (${p.recovery_codes_issued}); the old ones no longer work`,
  UserLoginNameChanged: (p) => (p.login_name ? `Login name on systems set to ${p.login_name}` : "Login name on systems removed"),
  SystemAccessDecided: (p, names) => `System login${p.login_name ? ` as ${p.login_name}` : ""} to ${names.system(p.system_id)}`
    + `${p.source ? ` from ${p.source}` : ""}: ${ACCESS_OUTCOME[p.outcome]} (${ACCESS_REASON[p.reason] || p.reason})`,
  ApplicationSignInDecided: (p, names) => `Sign-in to ${names.system(p.system_id)} (${PROTOCOL[p.protocol]})`
    + `${p.source ? ` from ${p.source}` : ""}: ${p.outcome === "signed_in" ? "signed in" : "refused"}`
    + ` (${ACCESS_REASON[p.reason] || p.reason})`,
};

const PROTOCOL = { oidc: "OpenID Connect", saml: "SAML" };
// A code checked by a login's or sign-in's own request: the history says where it was typed.
const DECISIONS = new Set(["SystemAccessDecided", "ApplicationSignInDecided"]);

const ACCESS_OUTCOME = { allow: "let in", code_required: "code asked", deny: "refused" };
const ACCESS_REASON = {
  code_verified: "code accepted", mfa_set_up: "MFA is set up", mfa_not_set_up: "MFA not set up",
  mfa_not_enabled_on_system: "MFA is off on this system", invalid_code: "wrong code",
  code_already_used: "code already used", throttled: "code attempts paused", factor_locked: "codes locked",
  mfa_not_enabled_on_application: "MFA is off for this application", locked_out: "locked out: enrollment period over",
};

const HISTORY_PAGE = 25;
const CODE_EVENTS = new Set(["TOTPVerified", "TOTPVerificationFailed"]);

/** Where a code was checked: the sign-in, or the system whose login decision shares the code's request. */
function codeWhere(envelope, decisions, names) {
  if (envelope.actor === "gateway:sign-in") return envelope.payload.scope === "admin_portal" ? " at sign-in" : " at the user portal sign-in";
  const decision = decisions.get(envelope.correlation_id);
  return decision ? ` on ${names.system(decision.payload.system_id)}` : "";
}

function describeEvent(envelope, decisions, names) {
  const payload = envelope.payload || {};
  const text = (EVENT_TEXT[envelope.type] || (() => envelope.type))(payload, names)
    + (CODE_EVENTS.has(envelope.type) ? codeWhere(envelope, decisions, names) : "");
  return payload.scope === "admin_portal" ? `Admin console: ${text}` : text;
}

function describeActor(actor, names) {
  const [kind, id] = actor.split(":");
  const short = id ? id.slice(0, 8) : "";
  return { admin: names.admin(id), api_key: `API key ${short}`, user: "The user", system: `Automatic (${id})` }[kind]
    || { "gateway:sign-in": "Sign-in", "gateway:system-agent": "System login", "gateway:password-reset": "Reset link" }[actor]
    || actor;
}

/** Every item of a paged list (admins, systems), for naming them; up to a few pages. */
async function everyItem(api, path) {
  const items = [];
  let cursor;
  for (let pages = 0; pages < 10; pages += 1) {
    const page = await api.get(path, { limit: 500, cursor });
    items.push(...page.items);
    if (!(cursor = page.next_cursor)) break;
  }
  return new Map(items.map((item) => [item.id, item.name]));
}

/** Names for ids in the history: admins and systems, or a short id for one since deleted. */
async function historyNames(api) {
  const [admins, systems] = await Promise.all([everyItem(api, "/admins").catch(() => new Map()),
    everyItem(api, "/systems").catch(() => new Map())]);
  return {
    admin: (id) => (admins.has(id) ? `${admins.get(id)} (admin)` : `A deleted admin (${id.slice(0, 8)})`),
    system: (id) => systems.get(id) || `a deleted system (${id.slice(0, 8)})`,
  };
}

/** The principal's history, newest first, a page at a time ("Show older events"). */
async function history(api, id) {
  const [records, names] = await Promise.all([api.ndjson("/audit/events", { principal_id: id }), historyNames(api)]);
  const envelopes = records.map((r) => (typeof r.envelope === "string" ? JSON.parse(r.envelope) : r.envelope)).reverse();
  if (!envelopes.length) return h("p", {}, "No events yet.");
  const decisions = new Map(envelopes.filter((e) => DECISIONS.has(e.type)).map((e) => [e.correlation_id, e]));
  const tbody = h("tbody");
  const shown = h("p", { class: "hint", role: "status" });
  const more = h("button", { type: "button", class: "secondary" }, "Show older events");
  const showUpTo = (count) => {
    const first = tbody.children.length;
    tbody.append(...envelopes.slice(first, count).map((e) => h("tr", { "data-event-type": e.type },
      h("td", { class: "nowrap" }, formatDate(e.occurred_at)), h("td", {}, describeEvent(e, decisions, names)),
      h("td", { title: e.actor }, describeActor(e.actor, names)))));
    shown.textContent = `Showing the newest ${Math.min(count, envelopes.length)} of ${plural(envelopes.length, "event")}.`;
    more.hidden = count >= envelopes.length;
    return tbody.children[first];
  };
  more.addEventListener("click", () => {
    const firstNew = showUpTo(tbody.children.length + HISTORY_PAGE);
    firstNew?.querySelector("td")?.setAttribute("tabindex", "-1");
    firstNew?.querySelector("td")?.focus();
  });
  showUpTo(HISTORY_PAGE);
  return h("div", {},
    h("table", { class: "history" },
      h("caption", { class: "visually-hidden" }, "History, newest first"),
      h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "When"), h("th", { scope: "col" }, "What happened"), h("th", { scope: "col" }, "By"))),
      tbody),
    shown, more);
}

/** Whether codes are taken now: paused after failures (until when), or locked until MFA is reset. */
function codeAttempts(user) {
  if (user.codes_locked) return "Locked after too many wrong codes: reset MFA to unlock";
  if (user.throttled_until) return `Paused after repeated wrong codes, until ${formatDate(user.throttled_until)}`;
  return "Accepted (not paused)";
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

  /** Shows the user again as of a change (its receipt), with `note` saying what changed. */
  const changed = async (receipt, note) => {
    const fresh = await asOf(receipt.consistency_token, (token) => api.get(`/users/${id}`, { consistent_with: token }));
    userView(api, main, id, { note, loaded: fresh });
  };
  const options = padlockMenu(api, user, changed);
  const edit = h("button", { type: "button", class: "secondary", onclick: () => editUserDialog(api, user, changed) }, "Edit name or email");
  const remove = h("button", { type: "button", class: "danger", onclick: () => deleteUserDialog(api, user, async (receipt, text) => {
    state.note = text;
    state.lastChange = receipt.consistency_token;
    window.location.hash = "#/users";
  }) }, "Delete user");
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
        h("dt", {}, "Login name on systems"), h("dd", {}, loginNameEditor(user, async (loginName) => changed(
          await api.json("PATCH", `/users/${id}`, { body: { login_name: loginName } }),
          loginName ? `Login name on systems set to ${loginName}.` : "Login name on systems removed."))),
        h("dt", {}, "MFA status"), h("dd", {}, h("div", { class: "status-line" }, options),
          h("p", { class: "hint", id: "status-explained" }, details[1])),
        h("dt", {}, "Required"), h("dd", {}, yesNo(user.required)),
        h("dt", {}, "MFA set up"), h("dd", {}, yesNo(user.set_up)),
        h("dt", {}, "Enrollment deadline"), h("dd", {}, hasPeriod(user) ? formatDate(user.deadline) : "—"),
        h("dt", {}, "Time remaining"), h("dd", { id: "time-remaining" }, user.time_remaining_seconds === null ? (user.status === "expired" ? "None: the deadline has passed" : "—") : formatDuration(user.time_remaining_seconds)),
        h("dt", {}, "Enrollment period"), h("dd", {}, user.enrollment_days ? `${user.enrollment_days} days` : "—"),
        h("dt", {}, "Setup prompt dismissed"), h("dd", {}, `${user.dismissals} time${user.dismissals === 1 ? "" : "s"}`),
        h("dt", {}, "Last code accepted"), h("dd", {}, formatDate(user.last_verified_at)),
        h("dt", {}, "Code attempts"), h("dd", { id: "code-attempts" }, codeAttempts(user))),
      h("div", { class: "actions" }, edit, mailReset, remove)),
    historySection);
  main.replaceChildren(view);
  focusHeading(view);
  await showHistory(historySection, api, id);
}

// Fills a history section (its first child is the heading) with the principal's history, or says why not.
export async function showHistory(section, api, id) {
  try {
    section.replaceChildren(section.firstChild, await history(api, id));
  } catch (failure) {
    section.replaceChildren(section.firstChild, h("p", { class: "error", role: "alert" }, `The history could not be loaded: ${failure.message}`));
  }
}
