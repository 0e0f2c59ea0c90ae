// Systems and applications (rule 10): register, rename and delete them; whether they ask users who set up
// MFA for a code (one switch per row, or in bulk); agent keys for Linux and Mac systems; how an SSO
// application signs its users in, and its client secrets.

import { errorBox, field, focusHeading, h } from "./common/ui.js";
import { addAgentKey } from "./agent_key.js";
import { editSignIn } from "./sign_in_settings.js";
import { actionDialog, asOf, keepingFocus, menuButton } from "./widgets.js";

const KINDS = { linux: "Linux (SSH login)", macos: "Mac (desktop login)", sso_application: "SSO application" };
const HAS_AGENT = new Set(["linux", "macos"]);
const PAGE_SIZE = 25;
const NAME_MAX = 200;
const CONTROL = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/;

// The search, page and selection survive a visit to another section. `lastChange`: the consistency token of
// the admin's latest change, so that every later read (a search, another page) shows it.
const state = { q: "", cursors: [null], page: 0, selected: new Map(), lastChange: undefined };

const plural = (n, one, many) => `${n} ${n === 1 ? one : many}`;

/** The name typed in `input`, or an Error saying what is wrong with it (the field marked and focused). */
function nameIn(input) {
  const name = input.value.trim();
  const wrong = !name ? "Enter a name." : name.length > NAME_MAX ? `Use at most ${NAME_MAX} characters.`
    : CONTROL.test(name) ? "Use a name without line breaks or control characters." : null;
  if (wrong) {
    input.setAttribute("aria-invalid", "true");
    input.focus();
    throw new Error(wrong);
  }
  input.removeAttribute("aria-invalid");
  return name;
}

function nameInput(value = "") {
  return h("input", { type: "text", name: "name", value, maxlength: String(NAME_MAX), required: true, autocomplete: "off", spellcheck: "false" });
}

/** The row's MFA switch: on means users who set up MFA are asked for a code on this system. */
function mfaSwitch(system, onToggle) {
  const on = system.mfa_enabled;
  const button = h("button", {
    type: "button", role: "switch", class: "switch", "aria-checked": String(on), "aria-label": `MFA on ${system.name}`,
  }, h("span", { class: "switch-track", "aria-hidden": "true" }, h("span", { class: "switch-thumb" })),
  h("span", { class: "switch-text", "aria-hidden": "true" }, on ? "Enabled" : "Disabled"));
  button.addEventListener("click", () => { if (!button.hasAttribute("aria-disabled")) onToggle(system, !on, button); });
  return button;
}

export function systemsView(api, main, context) {
  let rows = [];
  let loads = 0; // only the newest load shows: an older one (waiting for a change to show) may end later
  const message = h("div", { class: "status", role: "status" });
  const error = errorBox();
  const tbody = h("tbody");
  const heading = h("h1", {}, "Systems and applications");
  const selectAll = h("input", { type: "checkbox", "aria-label": "Select every system and application on this page" });
  const selectionText = h("span", { class: "selection", role: "status" });
  const clear = h("button", { type: "button", class: "link", hidden: true, onclick: () => { state.selected.clear(); render(); } }, "Clear selection");
  const pageText = h("span", { class: "page-number" });
  const previous = h("button", { type: "button", class: "secondary", onclick: () => { state.page -= 1; load(); } }, "Previous page");
  const next = h("button", { type: "button", class: "secondary", onclick: () => { state.page += 1; load(); } }, "Next page");
  const actions = menuButton("More actions", [
    { label: "Enable MFA", onSelect: () => bulkDialog(true) },
    { label: "Disable MFA", onSelect: () => bulkDialog(false) },
  ]);
  const tell = (text) => { message.textContent = text; };
  const rowControl = (id, selector) => () => tbody.querySelector(`tr[data-system-id="${CSS.escape(id)}"] ${selector}`);

  /** Runs an action from the page (not from a dialog, which shows its own refusals). */
  async function attempt(work) {
    error.clear();
    try {
      await work();
    } catch (failure) {
      if (failure.status !== 401) error.show(failure.message);
    }
  }

  // -- the list ------------------------------------------------------------------------------------

  function updateSelection() {
    const n = state.selected.size;
    selectionText.textContent = n ? `${n} selected` : "Select systems or applications to act on them";
    actions.button.disabled = n === 0;
    clear.hidden = n === 0;
    const onPage = rows.filter((system) => state.selected.has(system.id)).length;
    selectAll.checked = rows.length > 0 && onPage === rows.length;
    selectAll.indeterminate = onPage > 0 && onPage < rows.length;
  }

  function render() {
    keepingFocus(tbody, "data-system-id", renderRows);
    updateSelection();
  }

  const addKey = (system) => attempt(async () => {
    const minted = await addAgentKey(api, context, system);
    if (minted) tell(minted);
  });

  function rowActions(system) {
    const menu = menuButton("Actions", [
      { label: "Rename", onSelect: () => renameDialog(system) },
      ...(HAS_AGENT.has(system.kind) ? [{ label: "Add agent key", onSelect: () => addKey(system) }] : []),
      ...(system.kind === "sso_application" ? [
        { label: "Sign-in settings", onSelect: () => attempt(() => editSignIn(api, system, { onSaved: tell, addSecret: () => addKey(system) })) },
        { label: "Add client secret", onSelect: () => addKey(system) }] : []),
      { label: "Delete", onSelect: () => deleteDialog(system) },
    ]);
    menu.button.setAttribute("aria-label", `Actions for ${system.name}`);
    menu.querySelector("[role=menu]").setAttribute("aria-label", `Actions for ${system.name}`);
    return menu;
  }

  function renderRows() {
    const empty = state.q ? `No systems or applications have \u201c${state.q}\u201d in their name.`
      : "No systems or applications are registered yet.";
    tbody.replaceChildren(...(rows.length ? rows.map((system) => {
      const box = h("input", { type: "checkbox", "aria-label": `Select ${system.name}`, checked: state.selected.has(system.id) });
      box.addEventListener("change", () => {
        if (box.checked) state.selected.set(system.id, system); else state.selected.delete(system.id);
        updateSelection();
      });
      return h("tr", { "data-system-id": system.id },
        h("td", {}, box), h("td", {}, system.name), h("td", {}, KINDS[system.kind] || system.kind),
        h("td", {}, mfaSwitch(system, switchOne)), h("td", { class: "row-actions" }, rowActions(system)));
    }) : [h("tr", {}, h("td", { colspan: "5", class: "empty" }, empty))]));
  }

  /** The page; after a change, as of that change (its consistency token), else as of the admin's latest one. */
  async function load(consistentWith) {
    const mine = ++loads;
    state.lastChange = consistentWith || state.lastChange;
    error.clear();
    try {
      const page = await asOf(state.lastChange, (token) => api.get("/systems", {
        q: state.q, limit: PAGE_SIZE, cursor: state.cursors[state.page], consistent_with: token,
      }));
      if (mine !== loads) return undefined;
      if (!page.items.length && state.page > 0) { // its last row was deleted: show the page before
        state.page -= 1;
        return load();
      }
      rows = page.items;
      rows.filter((system) => state.selected.has(system.id)).forEach((system) => state.selected.set(system.id, system));
      state.cursors[state.page + 1] = page.next_cursor;
      state.cursors.length = state.page + 2;
      previous.disabled = state.page === 0;
      next.disabled = !page.next_cursor;
      pageText.textContent = `Page ${state.page + 1}`;
      render();
    } catch (failure) {
      if (failure.status !== 401 && mine === loads) error.show(`The systems could not be loaded: ${failure.message}`);
    }
    return undefined;
  }

  selectAll.addEventListener("change", () => {
    rows.forEach((system) => (selectAll.checked ? state.selected.set(system.id, system) : state.selected.delete(system.id)));
    render();
  });

  // -- one system ----------------------------------------------------------------------------------

  async function switchOne(system, enabled, button) {
    const change = async () => {
      const done = await api.json("PUT", `/systems/${system.id}/mfa`, { body: { enabled } });
      const word = enabled ? "enabled" : "disabled";
      tell(!done.event_ids.length ? `MFA was already ${word} on ${system.name}.`
        : enabled ? `MFA enabled on ${system.name}: users who have set up MFA are asked for a code when they sign in to it.`
          : `MFA disabled on ${system.name}: no one is asked for a code when signing in to it.`);
      await load(done.consistency_token);
    };
    if (!enabled) {
      actionDialog({
        title: `Disable MFA on ${system.name}?`, text: "No one will be asked for a code when signing in to it.",
        confirmLabel: "Disable MFA", danger: true, onConfirm: change, returnFocus: rowControl(system.id, "[role=switch]"),
      });
      return;
    }
    button.setAttribute("aria-disabled", "true"); // not `disabled`: that would take the focus away
    await attempt(change);
    button.removeAttribute("aria-disabled"); // a no-op on a row the reload replaced; keeps it usable when it failed
  }

  function renameDialog(system) {
    const input = nameInput(system.name);
    actionDialog({
      title: `Rename ${system.name}`, content: field("New name", input), confirmLabel: "Rename",
      returnFocus: rowControl(system.id, ".menu-button"),
      onConfirm: async () => {
        const name = nameIn(input);
        const done = await api.json("PATCH", `/systems/${system.id}`, { body: { name } });
        tell(done.event_ids.length ? `Renamed ${system.name} to ${name}.` : `${system.name} already has that name.`);
        await load(done.consistency_token);
      },
    });
  }

  function deleteDialog(system) {
    actionDialog({
      title: `Delete ${system.name}?`,
      text: `${system.name} disappears from the lists; this cannot be undone.`
        + (HAS_AGENT.has(system.kind) ? " Its agent keys decide nothing any more: an agent still installed on it refuses "
          + "every login except those of the users it excludes." : ""),
      confirmLabel: "Delete", danger: true, returnFocus: () => heading,
      onConfirm: async () => {
        const done = await api.json("DELETE", `/systems/${system.id}`);
        state.selected.delete(system.id);
        tell(`Deleted ${system.name}.`);
        await load(done.consistency_token);
      },
    });
  }

  function bulkDialog(enabled) {
    const chosen = new Map(state.selected);
    const n = chosen.size;
    const verb = enabled ? "Enable" : "Disable";
    actionDialog({
      title: `${verb} MFA on ${plural(n, "system or application", "systems or applications")}`,
      text: enabled
        ? "Users who have set up MFA will be asked for a code when they sign in to these; users who have not are not asked."
        : "No one will be asked for a code when signing in to these.",
      confirmLabel: `${verb} MFA`, danger: !enabled,
      onConfirm: async () => {
        const result = await api.post("/systems/mfa/bulk", { system_ids: [...chosen.keys()], enabled });
        const failed = Object.entries(result.failed);
        const word = enabled ? "enabled" : "disabled";
        tell(`MFA ${word} on ${result.changed.length} of ${n}.`
          + (result.unchanged.length ? ` ${result.unchanged.length} already had MFA ${word}.` : "")
          + (failed.length ? ` Failed: ${failed.map(([id, why]) => `${chosen.get(id)?.name || id} (${why})`).join(", ")}.` : ""));
        state.selected.clear();
        render();
        load(result.consistency_token);
      },
    });
  }

  // -- register and search -------------------------------------------------------------------------

  const newName = nameInput();
  const newKind = h("select", { name: "kind" }, Object.entries(KINDS).map(([value, text]) => h("option", { value }, text)));
  const registerError = errorBox();
  const register = h("form", { class: "filters", "aria-labelledby": "register-heading", novalidate: true },
    field("Name", newName), field("Kind", newKind),
    h("div", { class: "filter-actions" }, h("button", { type: "submit" }, "Register")));
  register.addEventListener("submit", async (event) => {
    event.preventDefault();
    registerError.clear();
    try {
      const name = nameIn(newName);
      const done = await api.post("/systems", { name, kind: newKind.value });
      tell(`Registered ${name} (${KINDS[newKind.value]}). MFA is off on it until you switch it on.`);
      newName.value = "";
      newName.focus();
      await load(done.consistency_token);
    } catch (failure) {
      if (failure.status !== 401) registerError.show(failure.message);
    }
  });

  const search = h("input", { type: "search", name: "q", value: state.q, autocomplete: "off" });
  const searchForm = h("form", { role: "search", class: "filters", "aria-label": "Search systems and applications" },
    field("Search by name", search),
    h("div", { class: "filter-actions" }, h("button", { type: "submit" }, "Search"),
      h("button", { type: "button", class: "secondary", onclick: () => { search.value = ""; find(); } }, "Clear search")));
  searchForm.addEventListener("submit", (event) => { event.preventDefault(); find(); });

  function find() {
    state.q = search.value.trim();
    state.cursors = [null];
    state.page = 0;
    load();
  }

  const view = h("div", { class: "view" },
    heading,
    h("p", {}, "With MFA enabled, a user who has set up MFA is asked for a code when signing in to the system or ",
      "application; a user who has not set it up is not asked. Linux and Mac systems need an agent with a key of its own."),
    h("section", { "aria-labelledby": "register-heading" },
      h("h2", { id: "register-heading" }, "Register a system or application"), register, registerError),
    h("h2", {}, "Registered systems and applications"),
    searchForm,
    h("div", { class: "toolbar" }, selectionText, clear, h("span", { class: "spacer" }), actions,
      h("button", { type: "button", class: "secondary", onclick: () => load() }, "Refresh")),
    message, error,
    h("div", { class: "table-wrap" }, h("table", { class: "systems" },
      h("caption", { class: "visually-hidden" }, "Systems and applications with their MFA setting. Select rows for bulk actions."),
      h("thead", {}, h("tr", {}, h("th", { scope: "col", class: "check" }, selectAll), h("th", { scope: "col" }, "Name"),
        h("th", { scope: "col" }, "Kind"), h("th", { scope: "col" }, "MFA"), h("th", { scope: "col" }, "Actions"))),
      tbody)),
    h("nav", { class: "pager", "aria-label": "Pages of systems and applications" }, previous, pageText, next));
  main.replaceChildren(view);
  focusHeading(view);
  load();
}
