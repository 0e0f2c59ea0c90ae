// Adding, editing and deleting a user, each in a dialog that checks its fields before sending.

import { field, h } from "./common/ui.js";
import { actionDialog } from "./widgets.js";

const EMAIL = /^[^\s@]+@[^\s@]+\.[^\s@]+$/;

function textInput(name, attrs = {}) {
  return h("input", { type: "text", name, autocomplete: "off", spellcheck: "false", ...attrs });
}

/** Throws (shown in the dialog, focus on the field) when a field is wrong. */
function check(input, ok, message) {
  if (ok) { input.removeAttribute("aria-invalid"); return; }
  input.setAttribute("aria-invalid", "true");
  input.focus();
  throw new Error(message);
}

function checkNameAndEmail(name, email) {
  check(name, name.value.trim() !== "", "Enter the user's name.");
  check(email, EMAIL.test(email.value.trim()), "Enter an email address such as ana@example.com.");
}

/** `onCreated(token, text)`: the consistency token of the new user and what to tell the admin. */
export function addUserDialog(api, onCreated) {
  const name = textInput("name", { autocomplete: "name" });
  const email = h("input", { type: "email", name: "email", autocomplete: "off", spellcheck: "false" });
  const mailLink = h("input", { type: "radio", name: "password_choice", value: "link", checked: true });
  const setNow = h("input", { type: "radio", name: "password_choice", value: "set" });
  const password = h("input", { type: "password", name: "password", autocomplete: "new-password", minlength: "8", disabled: true });
  const loginName = textInput("login_name");
  const choose = () => { password.disabled = !setNow.checked; };
  mailLink.addEventListener("change", choose);
  setNow.addEventListener("change", choose);
  actionDialog({
    title: "Add a user",
    confirmLabel: "Add user",
    content: h("div", {},
      field("Name", name), field("Email", email),
      h("fieldset", {}, h("legend", {}, "Password"),
        h("label", { class: "choice" }, mailLink, " Mail the user a link to set their own password"),
        h("label", { class: "choice" }, setNow, " Set a password now")),
      field("Password (at least 8 characters)", password),
      field("Login name on systems (optional)", loginName, "The Unix login an SSH agent reports, such as ana.")),
    onConfirm: async () => {
      checkNameAndEmail(name, email);
      if (setNow.checked) check(password, password.value.length >= 8, "Enter a password of at least 8 characters.");
      const login = loginName.value.trim();
      const row = { email: email.value.trim(), name: name.value.trim(), password: setNow.checked ? password.value : "", login_name: login };
      const answer = await api.post("/users/import", { rows: [row] });
      const [result] = answer.rows;
      if (result.outcome !== "created") throw new Error(result.detail);
      await onCreated(answer.consistency_token, `Added ${row.name} (${row.email})`
        + `${result.reset_link_mailed ? ": a link to set a password is on its way to them." : "."}`);
    },
  });
}

/** `onSaved(receipt, text)` once the name or email changed. */
export function editUserDialog(api, user, onSaved) {
  const name = textInput("name", { value: user.name });
  const email = h("input", { type: "email", name: "email", value: user.email, autocomplete: "off", spellcheck: "false" });
  actionDialog({
    title: `Edit ${user.name}`,
    confirmLabel: "Save",
    content: h("div", {}, field("Name", name), field("Email", email)),
    onConfirm: async () => {
      checkNameAndEmail(name, email);
      const changes = {};
      if (name.value.trim() !== user.name) changes.name = name.value.trim();
      if (email.value.trim() !== user.email) changes.email = email.value.trim();
      if (!Object.keys(changes).length) throw new Error("Nothing changed: edit the name or the email, or cancel.");
      const receipt = await api.json("PATCH", `/users/${user.id}`, { body: changes });
      await onSaved(receipt, `Saved: ${changes.name ? `name ${changes.name}` : ""}${changes.name && changes.email ? ", " : ""}${changes.email ? `email ${changes.email}` : ""}.`);
    },
  });
}

/** `onDeleted(receipt, text)` once deleted. */
export function deleteUserDialog(api, user, onDeleted) {
  actionDialog({
    title: `Delete ${user.name}?`,
    text: `${user.name} (${user.email}) will be deleted: they can no longer sign in, their sessions end now, and their login name is freed. Their history is kept.`,
    confirmLabel: `Delete ${user.name}`,
    danger: true,
    onConfirm: async () => {
      const receipt = await api.json("DELETE", `/users/${user.id}`);
      await onDeleted(receipt, `Deleted ${user.name} (${user.email}).`);
    },
  });
}
