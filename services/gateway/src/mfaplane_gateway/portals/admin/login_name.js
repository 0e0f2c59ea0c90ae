// A user's login name on systems (their Unix login, which an SSH agent reports; docs/agents.md): shown in
// the user's details, changed or removed in place.

import { busy, errorBox, field, h } from "./common/ui.js";

// The portable POSIX form the gateway accepts (contracts' LOGIN_NAME_PATTERN), at most 32 characters.
const LOGIN_NAME = /^[a-z_][a-z0-9_.-]*\$?$/;
const MAX = 32;
const RULES = "Lowercase letters, digits, _, . and -, starting with a letter or _; at most 32 characters.";

/** What the admin typed: the name, null (remove it), or an Error saying what is wrong. */
function typed(input) {
  const value = input.value.trim();
  if (!value) return null;
  if (value.length > MAX || !LOGIN_NAME.test(value)) throw new Error(`\u201c${value}\u201d cannot be a login name. ${RULES}`);
  return value;
}

function refusal(failure, name) {
  if (failure.code === "login_name_taken") return `\u201c${name}\u201d is already another user's login name: choose another.`;
  if (failure.code === "validation_error") return `That cannot be a login name. ${RULES}`;
  return failure.message;
}

/**
 * The value with a Change button; the button opens a small form in its place. `save(loginName)` sends
 * the change (null removes the name) and shows the result.
 */
export function loginNameEditor(user, save) {
  const cell = h("div", { class: "inline-edit" });
  const change = h("button", { type: "button", class: "link", "aria-label": "Change the login name on systems" }, "Change");

  function show() {
    cell.replaceChildren(h("span", { id: "login-name" }, user.login_name || "\u2014"), " ", change);
  }

  function edit() {
    const input = h("input", { type: "text", name: "login_name", value: user.login_name || "", maxlength: String(MAX),
      autocomplete: "off", autocapitalize: "none", spellcheck: "false" });
    const error = errorBox();
    const cancel = h("button", { type: "button", class: "secondary" }, "Cancel");
    const form = h("form", { novalidate: true },
      field("Login name on systems", input, `${RULES} Leave it empty to remove it.`), error,
      h("div", { class: "actions" }, h("button", { type: "submit" }, "Save login name"), cancel));
    cancel.addEventListener("click", () => { show(); change.focus(); });
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      error.clear();
      let name;
      try {
        name = typed(input);
      } catch (wrong) {
        input.setAttribute("aria-invalid", "true");
        error.show(wrong.message);
        input.focus();
        return;
      }
      busy(form, async () => {
        try {
          await save(name);
        } catch (failure) {
          input.setAttribute("aria-invalid", "true");
          error.show(refusal(failure, name));
          input.focus();
        }
      });
    });
    cell.replaceChildren(form);
    input.focus();
  }

  change.addEventListener("click", edit);
  show();
  return cell;
}
