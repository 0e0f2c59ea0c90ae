// The page a mailed password reset link opens, `<portal>/#reset=<token>`: the new password, typed twice,
// is set once through /v1 with the portal key. The token rides in the fragment, which the browser sends
// to no server (no access log, no Referer), and leaves the address bar as soon as the page has read it.

import { busy, errorBox, field, focusHeading, h } from "./ui.js";

const PREFIX = "#reset=";
const MIN_LENGTH = 8;

function message(error) {
  if (error.code === "invalid_reset_token") {
    return "This link does not work any more: it was already used, has expired, or a newer one was sent. "
      + "Ask your administrator for a new link.";
  }
  return error.message;
}

/** The token of the reset link that opened the page, if one did. */
export function takeResetToken() {
  if (!window.location.hash.startsWith(PREFIX)) return null;
  const token = window.location.hash.slice(PREFIX.length);
  window.history.replaceState(null, "", window.location.pathname + window.location.search);
  return token;
}

/** The new-password form; `onDone(note)` goes on to sign-in (note: null when cancelled). */
export function resetPage({ root, api, prefix, product, token, onDone }) {
  const error = errorBox();
  const password = h("input", { type: "password", name: "new-password", autocomplete: "new-password", required: true,
    maxlength: "256" });
  const again = h("input", { type: "password", name: "new-password-again", autocomplete: "new-password", required: true,
    maxlength: "256" });
  const form = h("form", { novalidate: true },
    field("New password", password, `At least ${MIN_LENGTH} characters; a long phrase is easiest to remember.`),
    field("New password again", again), error,
    h("div", { class: "actions" }, h("button", { type: "submit" }, "Set the new password"),
      h("button", { type: "button", class: "link", onclick: () => onDone(null) }, "Cancel")));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    error.clear();
    if ([...password.value].length < MIN_LENGTH) {
      error.show(`Choose a password of at least ${MIN_LENGTH} characters.`);
      password.focus();
      return;
    }
    if (password.value !== again.value) {
      error.show("The two passwords differ: type the same one twice.");
      again.value = "";
      again.focus();
      return;
    }
    busy(form, async () => {
      try {
        await api.post(`${prefix}/password-reset`, { token, new_password: password.value });
        onDone("Your password is changed and every session of yours has ended. Sign in with the new password.");
      } catch (failure) {
        error.show(message(failure));
      }
    });
  });
  const card = h("section", { class: "card" }, h("h1", {}, `Choose a new password for ${product}`), form);
  root.replaceChildren(card);
  focusHeading(card);
}
