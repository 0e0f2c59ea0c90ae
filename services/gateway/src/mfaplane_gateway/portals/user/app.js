// The reference user portal: sign in (with MFA), set up MFA, sign out, and set a new password through a
// mailed reset link. It calls nothing but /v1.

import { Api, loadConfig } from "./common/api.js";
import { resetPage, takeResetToken } from "./common/password_reset.js";
import { SignIn } from "./common/sign_in.js";
import { days, focusHeading, formatDate, h, logo, notConfigured } from "./common/ui.js";

const SESSION = "mfaplane.portal.session";
const main = document.getElementById("main");
document.getElementById("brand").prepend(logo());

async function start() {
  const config = await loadConfig();
  if (!config.configured) return notConfigured(main, "This portal");
  const api = new Api(config.api_base, config.portal_api_key);
  const flow = new SignIn({ root: main, api, prefix: "/portal", product: "the user portal", onSignedIn: signedIn });

  async function signedIn({ session, daysRemaining, deadline, dismissed, setUp }) {
    sessionStorage.setItem(SESSION, session);
    let info = null;
    try {
      info = await api.post("/portal/session", { session });
    } catch {
      sessionStorage.removeItem(SESSION);
      return flow.start("Your session has ended. Please sign in again.");
    }
    const signOut = h("button", { type: "button", class: "secondary" }, "Sign out");
    signOut.addEventListener("click", async () => {
      try { await api.post("/portal/sign-out", { session }); } catch { /* already ended */ }
      sessionStorage.removeItem(SESSION);
      flow.start("You are signed out.");
    });
    const card = h("section", { class: "card" },
      h("h1", {}, "You are signed in"),
      dismissed ? h("p", { class: "notice", role: "status" },
        `You chose to set up MFA later. ${days(daysRemaining)} remain in your enrollment period`
          + (deadline ? `, until ${formatDate(deadline)}; ` : "; "),
        "you will be asked again each time you sign in.") : null,
      setUp ? h("p", { class: "success", role: "status" }, "Your MFA is set up. Keep your phone and recovery codes safe.") : null,
      h("p", {}, `This session lasts until ${formatDate(info.expires_at)}.`),
      h("div", { class: "actions" }, signOut));
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
  if (stored) return signedIn({ session: stored });
  return flow.start(null, { focusForm: true });
}

start();
