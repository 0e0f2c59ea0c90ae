// The reference user portal: sign in (with MFA); a home page with the user's MFA (status, deadline,
// "set up now" while enrolling, recovery codes left and new ones); sign out; and a new password through
// a mailed reset link. It calls nothing but /v1.

import { Api, loadConfig } from "./common/api.js";
import { resetPage, takeResetToken } from "./common/password_reset.js";
import { SignIn, codeRefused, recoveryCodeList } from "./common/sign_in.js";
import { busy, copyButton, daysRemain, errorBox, field, focusHeading, formatDate, h, hold, logo,
  notConfigured, plural } from "./common/ui.js";

const SESSION = "mfaplane.portal.session";
// Set after a sign-in with a recovery code: its warning stays, across reloads, until new codes are made.
const RECOVERY_SIGN_IN = "mfaplane.portal.recovery-sign-in";
const FEW_CODES = 3;
const main = document.getElementById("main");
document.getElementById("brand").prepend(logo());

const STATUS_TEXT = {
  active: "On: you type a code from your authenticator app each time you sign in",
  enrolling: "Required by your administrator: set it up before the deadline",
  required_no_period: "Required by your administrator: set it up now",
  expired: "Required, and the enrollment period has ended",
  configured_not_required: "Set up, though your administrator does not require it",
  none: "Not required by your administrator",
};

const section = (title, ...content) => h("section", { class: "home-section" }, h("h2", {}, title), content);
const detail = (term, ...description) => [h("dt", {}, term), h("dd", {}, description)];

async function start() {
  const config = await loadConfig();
  if (!config.configured) return notConfigured(main, "This portal");
  const api = new Api(config.api_base, config.portal_api_key);
  const applicationSignIn = new URLSearchParams(window.location.search).get("sign_in");
  if (applicationSignIn) return signInToApplication(api, applicationSignIn);
  const flow = new SignIn({ root: main, api, prefix: "/portal", product: "the user portal", onSignedIn: signedIn });

  function ended() {
    sessionStorage.removeItem(SESSION);
    flow.start("Your session has ended. Please sign in again.");
  }

  /** Runs a call made with the session; a session that has ended goes back to the sign-in page. */
  async function withSession(call) {
    try {
      return await call();
    } catch (failure) {
      if (failure.code === "invalid_session") ended();
      throw failure;
    }
  }

  function signedIn({ session, dismissed, setUp, method }) {
    sessionStorage.setItem(SESSION, session);
    if (method === "recovery_code") sessionStorage.setItem(RECOVERY_SIGN_IN, "yes");
    else if (method) sessionStorage.removeItem(RECOVERY_SIGN_IN);
    const notes = [
      dismissed ? h("p", { class: "notice", role: "status" },
        "You chose to set up MFA later: you will be asked again each time you sign in, until the deadline below.")
        : null,
      setUp ? h("p", { class: "success", role: "status" }, "Your MFA is set up. Keep your phone and recovery codes safe.")
        : null,
    ];
    return home(session, notes);
  }

  async function home(session, notes = []) {
    let account;
    try {
      account = await withSession(() => api.post("/portal/account", { session }));
    } catch (failure) {
      if (failure.code !== "invalid_session") unavailable(session, failure);
      return null;
    }
    const { mfa } = account;
    const left = mfa.recovery_codes_left;
    const signOut = h("button", { type: "button", class: "secondary" }, "Sign out");
    signOut.addEventListener("click", async () => {
      try { await api.post("/portal/sign-out", { session }); } catch { /* already ended */ }
      sessionStorage.removeItem(SESSION);
      sessionStorage.removeItem(RECOVERY_SIGN_IN);
      flow.start("You are signed out.");
    });
    const card = h("section", { class: "card home" },
      h("h1", {}, "You are signed in"),
      h("p", { class: "signed-in-as" }, "Signed in as ", h("strong", {}, account.name || account.email || "you"),
        account.name && account.email ? ` (${account.email})` : ""),
      sessionStorage.getItem(RECOVERY_SIGN_IN) ? recoveryWarning(left) : null,
      notes,
      mfaSection(session, mfa),
      mfa.status === "active" || mfa.status === "configured_not_required"
        ? recoveryCodesSection(session, mfa, left) : null,
      h("div", { class: "home-section" }, h("p", {}, `This session lasts until ${formatDate(account.session_expires_at)}.`),
        h("div", { class: "actions" }, signOut)));
    main.replaceChildren(card);
    focusHeading(card);
    return card;
  }

  function unavailable(session, failure) {
    const card = h("section", { class: "card" }, h("h1", {}, "Your account cannot be shown right now"),
      h("p", { class: "error", role: "alert" }, failure.message),
      h("div", { class: "actions" }, h("button", { type: "button", onclick: () => home(session) }, "Try again")));
    main.replaceChildren(card);
    focusHeading(card);
  }

  function recoveryWarning(left) {
    return h("div", { class: "warning-box", role: "alert" },
      h("h2", {}, "You signed in with a recovery code"),
      h("p", {}, `That code is now used up: ${plural(left, "recovery code")} left. `,
        left === 0 ? h("strong", {}, "You have none left: make new ones now or ask your administrator for help.") : ""),
      h("h3", {}, "Next steps"),
      h("ul", {},
        h("li", {}, h("strong", {}, "Still have your authenticator app? "),
          "Make new recovery codes below and store them somewhere safe."),
        h("li", {}, h("strong", {}, "Lost your phone or the app? "),
          "Ask your administrator to reset your MFA, then set it up again on your new phone. ",
          "Until then, sign in with your remaining recovery codes."),
        h("li", {}, h("strong", {}, "Think someone else has your codes? "),
          "Make new ones now (the old ones stop working) and tell your administrator.")));
  }

  function mfaSection(session, mfa) {
    const enrolling = mfa.status === "enrolling" || mfa.status === "required_no_period";
    const list = h("dl", { class: "details" },
      detail("Status", h("span", { class: "status-text", "data-status": mfa.status }, STATUS_TEXT[mfa.status])),
      mfa.status === "enrolling"
        ? detail("Deadline", formatDate(mfa.deadline), ": ", h("strong", {}, daysRemain(mfa.days_remaining))) : null,
      mfa.locked ? detail("Codes", "Locked after too many wrong codes: contact your administrator, who can reset your MFA.")
        : null,
      !mfa.locked && mfa.throttled_until ? detail("Codes", `Paused after too many wrong codes, until ${
        formatDate(mfa.throttled_until)}.`) : null);
    return section("Multi-factor authentication", list, enrolling ? setUpNow(session, mfa) : null);
  }

  function setUpNow(session, mfa) {
    const error = errorBox();
    const button = h("button", { type: "button" }, "Set up now");
    const box = h("div", {},
      h("p", {}, mfa.status === "enrolling"
        ? "It takes two minutes: you need your phone and an authenticator app. After the deadline you are locked "
          + "out until an administrator helps you."
        : "You need your phone and an authenticator app."),
      error, h("div", { class: "actions" }, button));
    button.addEventListener("click", () => busy(box, async () => {
      try {
        const { challenge } = await withSession(() => api.post("/portal/setup/challenge", { session }));
        sessionStorage.removeItem(SESSION);  // traded for the setup, which opens a new one
        flow.setupStep(challenge);
      } catch (failure) {
        if (failure.code !== "invalid_session") error.show(failure.message);
      }
    }));
    return box;
  }

  function recoveryCodesSection(session, mfa, left) {
    const open = h("button", { type: "button", class: "secondary" }, "Make new recovery codes");
    const place = h("div", {}, h("div", { class: "actions" }, open));
    open.addEventListener("click", () => {
      place.replaceChildren(newCodesForm(session, mfa, () => place.replaceChildren(h("div", { class: "actions" }, open))));
      place.querySelector("input").focus();
    });
    return section("Recovery codes",
      h("p", { class: left <= FEW_CODES ? "notice" : null }, h("strong", { class: "codes-left" },
        `${plural(left, "recovery code")} left.`), " Each one signs you in once if you cannot use your phone.",
        left <= FEW_CODES ? " Make new ones before you run out." : ""),
      place);
  }

  function newCodesForm(session, mfa, cancel) {
    const error = errorBox();
    const input = h("input", { type: "text", name: "code", class: "code", inputmode: "numeric",
      autocomplete: "one-time-code", maxlength: "6", required: true, spellcheck: "false" });
    const form = h("form", { novalidate: true, "aria-labelledby": "new-codes-heading" },
      h("h3", { id: "new-codes-heading" }, "Make new recovery codes"),
      h("p", {}, "Your current recovery codes stop working as soon as the new ones are made."),
      field("Code from your authenticator app", input, "The 6-digit code your app shows now."), error,
      h("div", { class: "actions" }, h("button", { type: "submit" }, "Make new codes"),
        h("button", { type: "button", class: "link", onclick: cancel }, "Cancel")));
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      error.clear();
      const code = input.value.replace(/\s+/g, "");
      if (!/^[0-9]{6}$/.test(code)) {
        error.show("Enter the 6-digit code from your authenticator app (not a recovery code).");
        input.setAttribute("aria-invalid", "true");
        input.focus();
        return;
      }
      busy(form, async () => {
        try {
          const { recovery_codes: codes } = await withSession(() => api.post("/portal/recovery-codes", { session, code }));
          sessionStorage.removeItem(RECOVERY_SIGN_IN);
          newCodesShown(session, codes);
        } catch (failure) {
          if (failure.code !== "invalid_session") codeRefused(failure, { error, form, input, typed: code });
        }
      });
    });
    if (mfa.locked) {
      error.show("Your codes are locked after too many wrong ones: contact your administrator, who can reset your MFA.");
      hold(form, null);
    } else if (mfa.throttled_until) {
      error.show(`Too many wrong codes. Try again at ${formatDate(mfa.throttled_until)}.`);
      hold(form, new Date(mfa.throttled_until), () => error.show("You can try again now."));
    }
    return form;
  }

  function newCodesShown(session, codes) {
    const card = h("section", { class: "card" },
      h("h1", {}, "Your new recovery codes"),
      h("p", { class: "success", role: "status" }, "Your earlier recovery codes no longer work."),
      h("p", {}, "Each code signs you in once if you cannot use your phone. ",
        h("strong", {}, "They are shown only this once: store them somewhere safe now.")),
      recoveryCodeList(codes),
      h("div", { class: "actions" }, copyButton("Copy recovery codes", () => codes.join("\n")),
        h("button", { type: "button", onclick: () => home(session) }, "I have stored my new recovery codes: continue")));
    main.replaceChildren(card);
    focusHeading(card);
  }

  const token = takeResetToken();
  if (token) {
    sessionStorage.removeItem(SESSION);  // the reset ends it
    return resetPage({ root: main, api, prefix: "/portal", product: "the user portal", token,
      onDone: (note) => flow.start(note, { focusForm: true }) });
  }
  const stored = sessionStorage.getItem(SESSION);
  if (stored) return home(stored);
  return flow.start(null, { focusForm: true });
}

start();

/** An application sent the user here to sign in: the same steps, ending back at the application. */
async function signInToApplication(api, token) {
  let application;
  try {
    application = await api.post("/portal/application-sign-in", { application_sign_in: token });
  } catch (failure) {
    const card = h("section", { class: "card" }, h("h1", {}, "This sign-in cannot go on"),
      h("p", { class: "error", role: "alert" }, failure.message));
    main.replaceChildren(card);
    focusHeading(card);
    return;
  }
  new SignIn({ root: main, api, prefix: "/portal", product: application.name, applicationSignIn: token,
    onSignedIn: () => {} }).start(null, { focusForm: true });
}
