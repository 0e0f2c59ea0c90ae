// Admins: the list with each admin's MFA for this console (rule 11: an enrollment of its own, apart from the
// user portal's), one admin's details and history, the MFA actions that fit their state, adding and
// removing admins. Adding an admin, resetting an admin's MFA and removing its requirement ask for a
// recent code first (step-up): each is a step towards taking the console over.

import { busy, errorBox, field, focusHeading, formatDate, formatDuration, h } from "./common/ui.js";
import { withStepUp } from "./step_up.js";
import { deadlineCell, showHistory } from "./users.js";
import { STATUSES, STATUS_ORDER, actionDialog, asOf, hasPeriod, menuButton, statusBadge, statusDetails } from "./widgets.js";

const PAGE_SIZE = 25;
const PASSWORD_MIN = 8;
const EMAIL = /^[^\s@]+@[^\s@]+$/;

const ACTIONS = {
  require: { menu: "Require MFA", title: "Require MFA", verb: "Require", past: "MFA required", days: true,
    text: "The admin must set up MFA for the admin console within the enrollment period and is emailed the deadline. Their console sessions end now." },
  extend: { menu: "Extend enrollment period", title: "Extend the enrollment period", verb: "Extend", past: "Enrollment extended", days: true,
    text: "A new enrollment period starts now. The admin is emailed the new deadline." },
  reset: { menu: "Reset MFA", title: "Reset MFA", verb: "Reset", past: "MFA reset", days: true, danger: true, stepUp: "reset the MFA of",
    text: "Clears the admin's authenticator key and recovery codes and starts a new enrollment period from now. Their console sessions end; they are emailed and must set up MFA again." },
  "remove-requirement": { menu: "Remove MFA requirement", title: "Remove the MFA requirement", verb: "Remove requirement",
    past: "MFA requirement removed", stepUp: "remove the MFA requirement of",
    text: "The admin's enrollment no longer requires MFA; a key already set up is kept. While the gateway requires MFA of every admin (its default), they still sign in with a code." },
};

/** What each status allows: only the actions that change something. */
const FITS = {
  none: ["require"],
  configured_not_required: ["require", "reset"],
  enrolling: ["extend", "remove-requirement"],
  required_no_period: ["extend", "remove-requirement"],
  expired: ["extend", "reset", "remove-requirement"],
  active: ["reset", "remove-requirement"],
};

// Where the shared wording speaks of the user portal, an admin's status is about this console.
const ADMIN_MEANING = {
  expired: "Required, not set up, deadline passed: cannot sign in to the admin console until another admin extends the period, resets MFA or removes the requirement.",
  configured_not_required: "MFA is set up but not required by the admin's enrollment.",
};

// The list's search, filter and page survive a visit to an admin's details. `note` says what just changed;
// `lastChange`: the consistency token of the admin's latest change, so that every later read shows it.
const state = { q: "", status: "", cursors: [null], page: 0, note: "", lastChange: undefined };

/** What an MFA action did, as the admin reads it back. */
function changeNote(action, days, fresh) {
  const { past } = ACTIONS[action];
  if (action === "require" && fresh.set_up) return `${past}: MFA is already set up, so it is active at once.`;
  return days === null ? `${past}.` : `${past}: ${days}-day enrollment period, until ${formatDate(fresh.deadline)}.`;
}

const yesNo = (value) => (value ? "Yes" : "No");
const you = (isYou) => (isYou ? h("span", { class: "you" }, " (you)") : null);

/** `work()` after a fresh code if the gateway asks for one; an Error (shown in the dialog) if cancelled. */
async function steppedUp(tools, what, work) {
  const done = await withStepUp(tools.stepUp, what, work);
  if (done === null) throw new Error("Nothing was changed: this needs a current code from your authenticator app.");
  return done;
}

async function whoAmI(tools) {
  try {
    return (await tools.whoAmI()).principal_id;
  } catch {
    return null; // only the "(you)" marks are missing
  }
}

/** The value of `input`, or an Error saying what is wrong with it (the field marked and focused). */
function checked(input, wrong) {
  const value = input.value.trim();
  const problem = wrong(value);
  if (problem) {
    input.setAttribute("aria-invalid", "true");
    input.focus();
    throw new Error(problem);
  }
  input.removeAttribute("aria-invalid");
  return value;
}

/** A password no one knows, for an admin who sets their own with the mailed link. */
function unknowablePassword() {
  return btoa(String.fromCharCode(...crypto.getRandomValues(new Uint8Array(32))));
}

/** The add-an-admin dialog; `onAdded(note, receipt)` once made. */
function addAdminDialog(api, tools, onAdded) {
  const name = h("input", { type: "text", name: "name", required: true, autocomplete: "off", maxlength: "200" });
  const email = h("input", { type: "email", name: "email", required: true, autocomplete: "off", spellcheck: "false" });
  const password = h("input", { type: "password", name: "password", autocomplete: "new-password", minlength: String(PASSWORD_MIN) });
  const byLink = h("input", { type: "radio", name: "password-choice", value: "link", checked: true });
  const setNow = h("input", { type: "radio", name: "password-choice", value: "now" });
  const passwordField = field("Password", password, `At least ${PASSWORD_MIN} characters. Give it to them over another channel.`);
  passwordField.hidden = true;
  const choose = () => { passwordField.hidden = !setNow.checked; };
  byLink.addEventListener("change", choose);
  setNow.addEventListener("change", choose);
  const content = h("div", {},
    field("Name", name), field("Email address", email),
    h("fieldset", { class: "choice" }, h("legend", {}, "Their password"),
      h("label", {}, byLink, " Email them a link to set it (recommended)"),
      h("label", {}, setNow, " Set it now")),
    passwordField);
  actionDialog({
    title: "Add an admin",
    text: "The new admin can do everything you can in this console, and sets up their own MFA for it.",
    content, confirmLabel: "Add admin",
    onConfirm: async () => {
      const body = {
        name: checked(name, (v) => (v ? null : "Enter the admin's name.")),
        email: checked(email, (v) => (EMAIL.test(v) ? null : "Enter an email address such as ada@example.com.")),
        password: setNow.checked
          ? checked(password, (v) => (v.length >= PASSWORD_MIN ? null : `Use a password of at least ${PASSWORD_MIN} characters.`))
          : unknowablePassword(),
      };
      const created = await steppedUp(tools, `add ${body.email} as an admin`, () => api.post("/admins", body));
      onAdded(`Added ${body.name} (${body.email}) as an admin.${setNow.checked ? "" : ` ${await mailLink(api, created.id, body.email)}`}`, created);
    },
  });
}

/** Mails an admin a password reset link; says what happened. */
async function mailLink(api, id, email) {
  try {
    const sent = await api.post(`/admins/${id}/password-reset`);
    return `A link to set a password is on its way to ${email}; it works once, until ${formatDate(sent.expires_at)}.`;
  } catch (failure) {
    return `No password link was sent (${failure.message}); send one from the admin's page.`;
  }
}

export function adminsView(api, main, tools) {
  const message = h("div", { class: "status", role: "status" }, state.note);
  state.note = "";
  const error = errorBox();
  const tbody = h("tbody");
  let loads = 0; // only the newest load shows: an older one (waiting for a change to show) may end later
  const pageText = h("span", { class: "page-number" });
  const previous = h("button", { type: "button", class: "secondary", onclick: () => { state.page -= 1; load(); } }, "Previous page");
  const next = h("button", { type: "button", class: "secondary", onclick: () => { state.page += 1; load(); } }, "Next page");
  const search = h("input", { type: "search", name: "q", value: state.q, autocomplete: "off" });
  const status = h("select", { name: "status" }, [["", "Any status"], ...STATUS_ORDER.map((st) => [st, STATUSES[st].label])]
    .map(([value, text]) => h("option", { value, selected: state.status === value }, text)));
  const filters = h("form", { role: "search", class: "filters", "aria-label": "Filter admins" },
    field("Search name or email", search), field("MFA status", status),
    h("div", { class: "filter-actions" }, h("button", { type: "submit" }, "Apply filters"),
      h("button", { type: "button", class: "secondary", onclick: () => { search.value = ""; status.value = ""; apply(); } }, "Clear filters")));
  filters.addEventListener("submit", (event) => { event.preventDefault(); apply(); });

  function apply() {
    state.q = search.value.trim();
    state.status = status.value;
    state.cursors = [null];
    state.page = 0;
    load();
  }

  function renderRows(admins, me) {
    tbody.replaceChildren(...(admins.length ? admins.map((admin) => h("tr", { "data-admin-id": admin.id },
      h("td", {}, h("a", { href: `#/admins/${admin.id}` }, admin.name), you(admin.id === me)),
      h("td", {}, admin.email),
      h("td", {}, statusBadge(admin)),
      h("td", {}, yesNo(admin.required)),
      h("td", {}, deadlineCell(admin))))
      : [h("tr", {}, h("td", { colspan: "5", class: "empty" }, "No admins match these filters."))]));
  }

  async function load() {
    error.clear();
    const mine = ++loads;
    try {
      const [page, me] = await Promise.all([
        asOf(state.lastChange, (token) => api.get("/admins", {
          q: state.q, status: state.status, limit: PAGE_SIZE, cursor: state.cursors[state.page], consistent_with: token,
        })),
        whoAmI(tools)]);
      if (mine !== loads) return;
      state.cursors[state.page + 1] = page.next_cursor;
      state.cursors.length = state.page + 2;
      previous.disabled = state.page === 0;
      next.disabled = !page.next_cursor;
      pageText.textContent = `Page ${state.page + 1}`;
      renderRows(page.items, me);
    } catch (failure) {
      if (failure.status !== 401 && mine === loads) error.show(`The admins could not be loaded: ${failure.message}`);
    }
  }

  const add = h("button", { type: "button" }, "Add admin");
  add.addEventListener("click", () => addAdminDialog(api, tools, (note, created) => {
    message.textContent = note;
    state.lastChange = created.consistency_token;
    load();
  }));
  const table = h("table", { class: "admins" },
    h("caption", { class: "visually-hidden" }, "Admins with the status of their MFA for the admin console"),
    h("thead", {}, h("tr", {}, ...["Name", "Email", "MFA status", "Required", "Deadline"].map((title) => h("th", { scope: "col" }, title)))),
    tbody);
  const view = h("div", { class: "view" },
    h("h1", {}, "Admins"),
    h("p", { class: "hint" }, "Each admin's MFA here is for signing in to this admin console, apart from the user portal's."),
    filters,
    h("div", { class: "toolbar" }, add, h("span", { class: "spacer" }),
      h("button", { type: "button", class: "secondary", onclick: () => load() }, "Refresh")),
    message, error,
    h("div", { class: "table-wrap" }, table),
    h("nav", { class: "pager", "aria-label": "Pages of admins" }, previous, pageText, next));
  main.replaceChildren(view);
  focusHeading(view);
  load();
}

// -- one admin ----------------------------------------------------------------------------------

const LAST_ADMIN = "There must always be an admin, and this is the last one: add another admin before removing this one.";
const LAST_ADMIN_YOU = "There must always be an admin, and you are the last one: add another admin before removing yourself.";

function removeDialog(api, tools, admin, isYou, onRemoved) {
  actionDialog({
    title: isYou ? "Remove your own admin account?" : `Remove ${admin.name}?`,
    text: (isYou ? "You are about to remove yourself: you are signed out at once and can no longer sign in. " : "")
      + `${isYou ? "Your" : "Their"} password, MFA for this console and recovery codes are deleted, `
      + `${isYou ? "your" : "their"} sessions end and the API keys ${isYou ? "you" : "they"} minted stop working. This cannot be undone.`,
    confirmLabel: isYou ? "Remove my admin account" : "Remove admin", danger: true,
    onConfirm: async () => {
      let removed;
      try {
        removed = await api.json("DELETE", `/admins/${admin.id}`);
      } catch (failure) {
        throw failure.code === "last_admin" ? new Error(isYou ? LAST_ADMIN_YOU : LAST_ADMIN) : failure;
      }
      onRemoved(removed);
    },
  });
}

export async function adminView(api, main, id, tools, { note, loaded } = {}) {
  let admin = loaded;
  let me;
  try {
    [admin, me] = await Promise.all([admin || api.get(`/admins/${id}`), whoAmI(tools)]);
  } catch (failure) {
    main.replaceChildren(h("div", { class: "view" }, h("p", {}, h("a", { href: "#/admins" }, "Back to admins")),
      h("h1", {}, "Admin not available"), h("p", { class: "error", role: "alert" }, failure.message)));
    focusHeading(main);
    return;
  }
  const isYou = admin.id === me;
  const message = h("div", { class: "status", role: "status" }, note || "");
  const historySection = h("section", { "aria-labelledby": "history-heading" }, h("h2", { id: "history-heading" }, "History"),
    h("p", { role: "status" }, "Loading the history…"));

  const run = (action) => () => {
    const spec = ACTIONS[action];
    actionDialog({
      title: `${spec.title} for ${admin.name}`,
      text: spec.text + (isYou && spec.days && action !== "extend" ? " This is you: you will be signed out." : ""),
      confirmLabel: spec.verb, needsDays: spec.days, danger: spec.danger,
      onConfirm: async (days) => {
        const path = `/admins/${id}/mfa/${action}`;
        const send = () => (days === null ? api.json("POST", path) : api.post(path, { enrollment_days: days }));
        const receipt = spec.stepUp ? await steppedUp(tools, `${spec.stepUp} ${admin.name}`, send) : await send();
        state.lastChange = receipt.consistency_token;
        const fresh = await asOf(receipt.consistency_token, (token) => api.get(`/admins/${id}`, { consistent_with: token }));
        adminView(api, main, id, tools, { loaded: fresh, note: changeNote(action, days, fresh) });
      },
    });
  };
  const options = menuButton("MFA options", (FITS[admin.status] || []).map((action) => ({ label: ACTIONS[action].menu, onSelect: run(action) })));
  const mailReset = h("button", { type: "button", class: "secondary" }, "Mail a password reset link");
  mailReset.addEventListener("click", () => busy(view, async () => { message.textContent = await mailLink(api, id, admin.email); }));
  const remove = h("button", { type: "button", class: "danger" }, isYou ? "Remove my admin account" : "Remove admin");
  remove.addEventListener("click", () => removeDialog(api, tools, admin, isYou, (removed) => {
    if (isYou) {
      tools.leave("Your admin account was removed.");
    } else {
      state.note = `Removed ${admin.name} (${admin.email}).`;
      state.lastChange = removed.consistency_token;
      window.location.hash = "#/admins";
    }
  }));

  const view = h("div", { class: "view" },
    h("p", {}, h("a", { href: "#/admins" }, "Back to admins")),
    h("h1", {}, admin.name, you(isYou)),
    message,
    h("section", { class: "card wide", "aria-labelledby": "details-heading" },
      h("h2", { id: "details-heading" }, "MFA for the admin console"),
      h("dl", { class: "details" },
        h("dt", {}, "Email"), h("dd", {}, admin.email),
        h("dt", {}, "MFA status"), h("dd", {}, h("div", { class: "status-line" }, statusBadge(admin), options),
          h("p", { class: "hint", id: "status-explained" }, ADMIN_MEANING[admin.status] || statusDetails(admin)[1])),
        h("dt", {}, "Required"), h("dd", {}, yesNo(admin.required)),
        h("dt", {}, "MFA set up"), h("dd", {}, yesNo(admin.set_up)),
        h("dt", {}, "Enrollment deadline"), h("dd", {}, hasPeriod(admin) ? formatDate(admin.deadline) : "—"),
        h("dt", {}, "Time remaining"), h("dd", {}, admin.time_remaining_seconds === null ? "—" : formatDuration(admin.time_remaining_seconds)),
        h("dt", {}, "Last code accepted"), h("dd", {}, formatDate(admin.last_verified_at))),
      h("div", { class: "actions" }, mailReset, remove)),
    historySection);
  main.replaceChildren(view);
  focusHeading(view);
  await showHistory(historySection, api, id);
}
