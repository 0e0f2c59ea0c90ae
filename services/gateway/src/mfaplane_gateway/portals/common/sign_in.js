// The sign-in flow of both portals (rules 7, 8, 11): email and password, then by the answer's outcome
// a code, the dismissable setup prompt, required setup, or the locked-out page; setup shows the QR
// code, the key for typing, asks for the first code and shows the recovery codes once.

import { busy, codeTimer, copyButton, days, errorBox, field, focusHeading, formatDate, formatMoment, h, hold,
  retryAt } from "./ui.js";

const CODE = /^[0-9A-Za-z-]{6,32}$/;
const APP_CODE = /^[0-9]{6}$/;
const RESTART = new Set(["invalid_challenge", "setup_superseded", "no_setup_in_progress"]);
// Refusals that say when to come back (or that only an administrator can help): the form waits until then.
const HELD = new Set(["throttled", "rate_limited", "factor_locked"]);

/** What a refusal means to the person; `typed`: the code they sent, which tells a recovery code from an app's. */
function message(error, typed = "") {
  switch (error.code) {
    case "invalid_credentials": return "The email address or password is not correct.";
    case "invalid_challenge": return "Your sign-in took too long. Please sign in again.";
    case "invalid_code":
      return APP_CODE.test(typed) || !typed
        ? "That code is not correct or has expired. Type the code your app shows now."
        : "That recovery code is not correct or was already used: each recovery code works only once. "
          + "Check what you typed, or use another of your codes.";
    case "code_already_used": return "This code was just used: wait for the next one in your app, then type it.";
    case "throttled": return `Too many wrong codes. Try again at ${formatMoment(retryAt(error))}.`;
    case "rate_limited": return `Too many attempts. Try again at ${formatMoment(retryAt(error))}.`;
    case "factor_locked":
      return "Too many wrong codes: your codes are locked. Contact your administrator, who can reset your MFA.";
    case "unauthenticated": return "This portal's API key is not accepted by the gateway. Ask your administrator.";
    default: return error.message;
  }
}

/**
 * Shows why a code was refused; after too many wrong ones holds the form until it may be used again.
 * Returns true when it held the form.
 */
export function codeRefused(failure, { error, form, input, typed }) {
  error.show(message(failure, typed));
  if (HELD.has(failure.code) && form) {
    if (input) input.value = "";
    hold(form, failure.code === "factor_locked" ? null : retryAt(failure),
      () => error.show("You can try again now."));
    return true;
  }
  if (input) {
    input.value = "";
    input.setAttribute("aria-invalid", "true");
    input.focus();
  }
  return false;
}

/** Recovery codes shown once, after setup or when new ones are made. */
export const recoveryCodeList = (codes) =>
  h("ol", { class: "recovery-codes", id: "recovery-codes" }, codes.map((c) => h("li", {}, h("code", {}, c))));

const STORES = [["iPhone or iPad", "the App Store"], ["Android phone", "Google Play"]];
const APPS = ["Google Authenticator", "Microsoft Authenticator"];

/** Where to get an authenticator app: named, not linked (the portal refers to no other site). */
export function authenticatorApps() {
  return [
    h("p", {}, "Install a free authenticator app on your phone, if you have none yet:"),
    h("ul", { class: "app-stores" }, STORES.map(([device, store]) => h("li", {}, `On an ${device}: open `,
      h("strong", {}, store), ", search for ", h("strong", {}, APPS[0]), " or ", h("strong", {}, APPS[1]),
      " and install it."))),
    h("p", { class: "help" }, "Other authenticator apps, such as FreeOTP or Aegis, or a password manager that makes "
      + "codes, work too."),
  ];
}

export class SignIn {
  /**
   * root: where the flow renders; api: an Api with the portal key; prefix: "/portal" or "/admin-portal";
   * product: "the user portal" or "the admin console", or the application's name;
   * applicationSignIn: the identity provider's token when an application sent the user here: the sign-in
   * then ends back at the application (the gateway's `redirect_to`) instead of in `onSignedIn`;
   * onSignedIn({session, daysRemaining, deadline, dismissed, setUp, method, recoveryCodesLeft}).
   */
  constructor({ root, api, prefix, product, onSignedIn, applicationSignIn = null }) {
    Object.assign(this, { root, api, prefix, product, onSignedIn, applicationSignIn });
    this.cleanups = [];
  }

  show(...nodes) {
    this.cleanups.splice(0).forEach((stop) => stop());
    const card = h("section", { class: "card" }, nodes);
    this.root.replaceChildren(card);
    return card;
  }

  timer() {
    const t = codeTimer();
    this.cleanups.push(t.stop);
    return t.el;
  }

  done(result, answer) {
    this.cleanups.splice(0).forEach((stop) => stop());
    if (answer.redirect_to) {
      focusHeading(this.show(h("h1", {}, `Signing you in to ${this.product}…`)));
      window.location.assign(answer.redirect_to);
      return;
    }
    this.onSignedIn({ ...result, email: this.email });
  }

  /** Step one. `note` is shown above the form (e.g. "You are signed out."). */
  start(note, { focusForm = false } = {}) {
    const error = errorBox();
    const email = h("input", { type: "email", name: "email", autocomplete: "username", required: true, spellcheck: "false" });
    const password = h("input", { type: "password", name: "password", autocomplete: "current-password", required: true });
    const form = h("form", { novalidate: true, "aria-labelledby": "sign-in-heading" },
      field("Email address", email), field("Password", password), error,
      h("div", { class: "actions" }, h("button", { type: "submit" }, "Sign in")));
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      error.clear();
      if (!email.value.trim() || !password.value) {
        error.show("Enter your email address and your password.");
        (email.value.trim() ? password : email).focus();
        return;
      }
      busy(form, async () => {
        try {
          this.email = email.value.trim();
          const answer = await this.api.post(`${this.prefix}/sign-in`, { email: this.email, password: password.value,
            ...(this.applicationSignIn ? { application_sign_in: this.applicationSignIn } : {}) });
          this.outcome(answer);
        } catch (failure) {
          if (!codeRefused(failure, { error, form })) {
            password.value = "";
            password.focus();
          }
        }
      });
    });
    const card = this.show(h("h1", { id: "sign-in-heading" }, `Sign in to ${this.product}`),
      note ? h("p", { class: "status", role: "status" }, note) : null, form);
    if (focusForm) email.focus(); else focusHeading(card);
  }

  outcome(answer) {
    switch (answer.outcome) {
      case "signed_in": return this.done({ session: answer.session }, answer);
      case "mfa_required": return this.codeStep(answer.challenge);
      case "enrollment_prompt": return this.promptStep(answer);
      case "setup_required": return this.setupRequiredStep(answer);
      case "locked_out": return this.lockedStep(answer);
      default: return this.start(`Unexpected answer from the gateway: ${answer.outcome}.`);
    }
  }

  failed(failure, error, refused = {}) {
    if (RESTART.has(failure.code)) return this.start(message(failure));
    codeRefused(failure, { error, ...refused });
    return undefined;
  }

  /** `numeric`: a TOTP code only (setup); otherwise recovery codes (letters) are welcome too. */
  codeInput(numeric = false) {
    return h("input", {
      type: "text", name: "code", class: "code", inputmode: numeric ? "numeric" : "text", autocomplete: "one-time-code",
      maxlength: "32", required: true, spellcheck: "false",
    });
  }

  /** Reads a code field; says what is wrong with it. */
  code(input, error) {
    const code = input.value.replace(/\s+/g, "");
    if (!CODE.test(code)) {
      error.show("Enter the 6-digit code from your authenticator app.");
      input.setAttribute("aria-invalid", "true");
      input.focus();
      return null;
    }
    input.removeAttribute("aria-invalid");
    return code;
  }

  /** A code form (with the code's timer and Cancel); `send(code)` gets a well-formed code, its failures are shown. */
  codeForm({ label, help, numeric = false, submit, send }) {
    const error = errorBox();
    const input = this.codeInput(numeric);
    const form = h("form", { novalidate: true }, field(label, input, help), this.timer(), error,
      h("div", { class: "actions" }, h("button", { type: "submit" }, submit),
        h("button", { type: "button", class: "link", onclick: () => this.start() }, "Cancel")));
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      error.clear();
      const code = this.code(input, error);
      if (code) {
        busy(form, async () => {
          try { await send(code); } catch (failure) { this.failed(failure, error, { form, input, typed: code }); }
        });
      }
    });
    return form;
  }

  codeStep(challenge) {
    const form = this.codeForm({
      label: "Verification code",
      help: "The 6-digit code your authenticator app shows, or one of your recovery codes.",
      submit: "Verify",
      send: async (code) => {
        const answer = await this.api.post(`${this.prefix}/verify`, { challenge, code });
        this.done({ session: answer.session, method: answer.method, recoveryCodesLeft: answer.recovery_codes_left }, answer);
      },
    });
    const card = this.show(h("h1", {}, "Enter your verification code"),
      h("p", {}, `Open your authenticator app and type the code it shows for ${this.product}.`), form);
    focusHeading(card);
  }

  promptStep(answer) {
    const error = errorBox();
    const later = h("button", { type: "button", class: "secondary" }, "Not now");
    const now = h("button", { type: "button", onclick: () => this.setupStep(answer.challenge) }, "Set up now");
    later.addEventListener("click", () => busy(card, async () => {
      try {
        const done = await this.api.post(`${this.prefix}/dismiss-prompt`, { challenge: answer.challenge });
        this.done({ session: done.session, daysRemaining: done.days_remaining, deadline: done.deadline, dismissed: true },
          done);
      } catch (failure) { this.failed(failure, error); }
    }));
    const card = this.show(
      h("h1", {}, "Set up multi-factor authentication"),
      h("p", {}, `Your administrator requires multi-factor authentication (MFA) for ${this.product}. `,
        "Each time you sign in you will also type a code from an authenticator app on your phone."),
      h("p", { class: "notice" }, h("strong", {}, `${days(answer.days_remaining)} left`),
        ` to set it up: until ${formatDate(answer.deadline)}. After that you are locked out until an administrator helps you.`),
      h("p", {}, "You need an authenticator app, such as Google Authenticator, Microsoft Authenticator, FreeOTP or Aegis. ",
        "You can set it up now or later, until the deadline."),
      error, h("div", { class: "actions" }, now, later));
    focusHeading(card);
  }

  /** `answer.reason`: why MFA is required, when it is a rule of the product (every admin) rather than an admin's choice. */
  setupRequiredStep({ challenge, reason }) {
    const card = this.show(
      h("h1", {}, "Set up multi-factor authentication to continue"),
      h("p", {}, reason ? `${reason} Set it up now to sign in.`
        : `Your administrator requires multi-factor authentication (MFA) for ${this.product}, with no enrollment period: set it up now to sign in.`),
      h("p", {}, "You need an authenticator app, such as Google Authenticator, Microsoft Authenticator, FreeOTP or Aegis."),
      h("div", { class: "actions" },
        h("button", { type: "button", onclick: () => this.setupStep(challenge) }, "Set up now"),
        h("button", { type: "button", class: "link", onclick: () => this.start() }, "Cancel")));
    focusHeading(card);
  }

  lockedStep(answer) {
    const card = this.show(
      h("h1", {}, "You are locked out"),
      h("p", { class: "error", role: "alert" }, answer.reason || "You cannot sign in now."),
      answer.deadline ? h("p", {}, `Your MFA enrollment period ended on ${formatDate(answer.deadline)}.`) : null,
      h("p", {}, "Contact your administrator. Once they extend your enrollment period, reset your MFA or remove the ",
        "requirement, you can sign in again."),
      h("div", { class: "actions" },
        h("button", { type: "button", class: "secondary", onclick: () => this.start() }, "Back to sign-in")));
    focusHeading(card);
  }

  async setupStep(challenge) {
    const loading = this.show(h("h1", {}, "Set up your authenticator app"), h("p", { role: "status" }, "Preparing your key…"));
    focusHeading(loading);
    let material;
    try {
      material = await this.api.post(`${this.prefix}/setup/begin`, { challenge });
    } catch (failure) {
      this.start(message(failure));
      return;
    }
    const form = this.codeForm({
      label: "First code from your app",
      numeric: true,
      submit: "Confirm and finish setup",
      send: async (code) => this.recoveryStep(await this.api.post(`${this.prefix}/setup/confirm`, { challenge, code })),
    });
    const key = h("code", { class: "key", id: "setup-key" }, material.key_text);
    const card = this.show(
      h("h1", {}, "Set up your authenticator app"),
      h("ol", { class: "steps" },
        h("li", {}, h("h2", {}, "Get an authenticator app"), authenticatorApps()),
        h("li", {}, h("h2", {}, "Scan this QR code"),
          h("p", {}, "In your authenticator app, choose to add an account and scan the code."),
          h("img", { class: "qr", src: `data:image/png;base64,${material.qr_png_base64}`, width: "224", height: "224",
            alt: "QR code that adds this account to an authenticator app. If you cannot scan it, type the key below." }),
          h("p", {}, h("a", { href: material.otpauth_uri }, "Or open it in an authenticator app on this device"))),
        h("li", {}, h("h2", {}, "Can't scan it? Type this key"),
          h("p", { id: "key-label" }, "The key, in groups of four characters (spaces do not matter):"),
          key, copyButton("Copy key", () => material.key_text.replace(/\s+/g, "")),
          h("p", { class: "notice" }, h("strong", {}, "Keep this key safe. "),
            "Store it somewhere private, such as a password manager: with it you can add your MFA to a new phone ",
            "if you lose this one. Anyone who has it can make your codes.")),
        h("li", {}, h("h2", {}, "Enter the first code"), h("p", {}, "Type the 6-digit code your app now shows."), form)));
    key.setAttribute("aria-labelledby", "key-label");
    focusHeading(card);
  }

  recoveryStep(answer) {
    const codes = answer.recovery_codes;
    const card = this.show(
      h("h1", {}, "MFA setup is complete"),
      h("p", { class: "success", role: "status" }, "From now on you will type a code from your app each time you sign in."),
      h("h2", {}, "Your recovery codes"),
      h("p", {}, "Each code signs you in once if you cannot use your phone. ",
        h("strong", {}, "They are shown only this once: store them somewhere safe now.")),
      recoveryCodeList(codes),
      h("div", { class: "actions" }, copyButton("Copy recovery codes", () => codes.join("\n")),
        h("button", { type: "button", onclick: () => this.done({ session: answer.session, setUp: true }, answer) },
          "I have stored my recovery codes: continue")));
    focusHeading(card);
  }
}
