// Systems and applications (rule 10): which ask users who set up MFA for a code; MFA on or off in bulk.

import { errorBox, focusHeading, h, s } from "./common/ui.js";
import { actionDialog, asOf, keepingFocus, menuButton } from "./widgets.js";

const KINDS = { linux: "Linux (SSH login)", macos: "Mac (desktop login)", sso_application: "SSO / SAML application" };

function shield(on) {
  return s("svg", { viewBox: "0 0 24 24", width: "18", height: "18", class: `shield ${on ? "tone-ok" : "tone-idle"}`, "aria-hidden": "true", focusable: "false" },
    s("path", { d: "M12 2 4 5v6c0 5 3.4 9.4 8 11 4.6-1.6 8-6 8-11V5z", fill: on ? "currentColor" : "none", stroke: "currentColor", "stroke-width": "1.8" }),
    on ? s("path", { d: "M8.5 12.2l2.4 2.4 4.6-4.8", fill: "none", stroke: "#fff", "stroke-width": "2", "stroke-linecap": "round", "stroke-linejoin": "round" }) : null);
}

export function systemsView(api, main) {
  const selected = new Set();
  let systems = [];
  const message = h("div", { class: "status", role: "status" });
  const error = errorBox();
  const tbody = h("tbody");
  const selectAll = h("input", { type: "checkbox", "aria-label": "Select every system and application" });
  const selectionText = h("span", { class: "selection", role: "status" });
  const actions = menuButton("More actions", [
    { label: "Enable MFA", onSelect: () => switchDialog(true) },
    { label: "Disable MFA", onSelect: () => switchDialog(false) },
  ]);

  function updateSelection() {
    const n = selected.size;
    selectionText.textContent = n ? `${n} selected` : "Select systems or applications to act on them";
    actions.button.disabled = n === 0;
    selectAll.checked = systems.length > 0 && n === systems.length;
    selectAll.indeterminate = n > 0 && n < systems.length;
  }

  function render() {
    keepingFocus(tbody, "data-system-id", renderRows);
    updateSelection();
  }

  function renderRows() {
    tbody.replaceChildren(...(systems.length ? systems.map((system) => {
      const box = h("input", { type: "checkbox", "aria-label": `Select ${system.name}`, checked: selected.has(system.id) });
      box.addEventListener("change", () => { if (box.checked) selected.add(system.id); else selected.delete(system.id); updateSelection(); });
      return h("tr", { "data-system-id": system.id },
        h("td", {}, box), h("td", {}, system.name), h("td", {}, KINDS[system.kind] || system.kind),
        h("td", {}, h("span", { class: "mfa-switch" }, shield(system.mfa_enabled), system.mfa_enabled ? "Enabled" : "Disabled")));
    }) : [h("tr", {}, h("td", { colspan: "4", class: "empty" }, "No systems or applications are registered yet."))]));
  }

  /** Every system, page by page; after a change, as of that change (its consistency token). */
  async function allSystems(consistentWith) {
    const found = [];
    let cursor = null;
    do {
      const page = await api.get("/systems", { limit: 500, cursor, consistent_with: consistentWith });
      found.push(...page.items);
      cursor = page.next_cursor;
    } while (cursor);
    return found;
  }

  async function load(consistentWith) {
    error.clear();
    try {
      systems = await asOf(consistentWith, allSystems);
      const ids = new Set(systems.map((x) => x.id));
      [...selected].filter((id) => !ids.has(id)).forEach((id) => selected.delete(id));
      render();
    } catch (failure) {
      if (failure.status !== 401) error.show(`The systems could not be loaded: ${failure.message}`);
    }
  }

  selectAll.addEventListener("change", () => {
    systems.forEach((x) => (selectAll.checked ? selected.add(x.id) : selected.delete(x.id)));
    render();
  });

  function switchDialog(enabled) {
    const ids = [...selected];
    const verb = enabled ? "Enable" : "Disable";
    actionDialog({
      title: `${verb} MFA on ${ids.length} system${ids.length === 1 ? "" : "s"} or application${ids.length === 1 ? "" : "s"}`,
      text: enabled
        ? "Users who have set up MFA will be asked for a code when they sign in to these; users who have not are not asked."
        : "No one will be asked for a code when signing in to these.",
      confirmLabel: `${verb} MFA`, needsDays: false, danger: !enabled,
      onConfirm: async () => {
        const result = await api.post("/systems/mfa/bulk", { system_ids: ids, enabled });
        const failed = Object.entries(result.failed);
        const names = new Map(systems.map((x) => [x.id, x.name]));
        const state = enabled ? "enabled" : "disabled";
        message.textContent = `MFA ${state} on ${result.changed.length} of ${ids.length}.`
          + (result.unchanged.length ? ` ${result.unchanged.length} already had MFA ${state}.` : "")
          + (failed.length ? ` Failed: ${failed.map(([id, why]) => `${names.get(id) || id} (${why})`).join(", ")}.` : "");
        selected.clear();
        render();
        load(result.consistency_token);
      },
    });
  }

  const view = h("div", { class: "view" },
    h("h1", {}, "Systems and applications"),
    h("p", {}, "With MFA enabled, a user who has set up MFA is asked for a code when signing in to the system or ",
      "application; a user who has not set it up is not asked."),
    h("div", { class: "toolbar" }, selectionText, h("span", { class: "spacer" }), actions,
      h("button", { type: "button", class: "secondary", onclick: () => load() }, "Refresh")),
    message, error,
    h("div", { class: "table-wrap" }, h("table", { class: "systems" },
      h("caption", { class: "visually-hidden" }, "Systems and applications with their MFA setting"),
      h("thead", {}, h("tr", {}, h("th", { scope: "col", class: "check" }, selectAll), h("th", { scope: "col" }, "Name"),
        h("th", { scope: "col" }, "Kind"), h("th", { scope: "col" }, "MFA"))),
      tbody)));
  main.replaceChildren(view);
  focusHeading(view);
  load();
}
