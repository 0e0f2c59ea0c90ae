// The reference admin console. Signs the admin in through /v1/admin-portal (with the admin's own MFA,
// rule 11) using the portal key, then calls the admin API with the admin's session as the Bearer token.
// It calls nothing but /v1.

import { Api, loadConfig } from "./common/api.js";
import { resetPage, takeResetToken } from "./common/password_reset.js";
import { SignIn } from "./common/sign_in.js";
import { logo, notConfigured } from "./common/ui.js";
import { adminView, adminsView } from "./admins.js";
import { systemsView } from "./systems.js";
import { userView, usersView } from "./users.js";

const SESSION = "mfaplane.admin.session";
const EMAIL = "mfaplane.admin.email";
const main = document.getElementById("main");
const nav = document.getElementById("sections");
const who = document.getElementById("who");
const whoName = document.getElementById("who-name");
const signOutButton = document.getElementById("sign-out");
document.getElementById("brand").prepend(logo());

async function start() {
  const config = await loadConfig();
  if (!config.configured) return notConfigured(main, "The admin console");
  const portal = new Api(config.api_base, config.portal_api_key);
  let admin = null;
  let tools = null; // beyond the admin API: the step-up, who is signed in, signing out, where the gateway is

  const flow = new SignIn({
    root: main, api: portal, prefix: "/admin-portal", product: "the admin console",
    onSignedIn: ({ session, email }) => {
      sessionStorage.setItem(SESSION, session);
      if (email) sessionStorage.setItem(EMAIL, email);
      enter(session);
    },
  });

  function leave(note) {
    sessionStorage.removeItem(SESSION);
    sessionStorage.removeItem(EMAIL);
    admin = null;
    nav.hidden = true;
    who.hidden = true;
    flow.start(note);
  }

  function enter(session) {
    admin = new Api(config.api_base, session, {
      onUnauthenticated: () => { if (admin) leave("Your session has ended. Please sign in again."); },
    });
    tools = {
      stepUp: (code) => portal.post("/admin-portal/step-up", { session, code }), apiBase: config.api_base,
      whoAmI: () => portal.post("/admin-portal/session", { session }), leave,
    };
    whoName.textContent = sessionStorage.getItem(EMAIL) || "an admin";
    nav.hidden = false;
    who.hidden = false;
    if (!window.location.hash.startsWith("#/")) window.history.replaceState(null, "", "#/users");
    route();
  }

  function route() {
    if (!admin) return;
    const path = window.location.hash.slice(1) || "/users";
    const section = ["systems", "admins"].find((name) => path.startsWith(`/${name}`)) || "users";
    nav.querySelectorAll("a").forEach((a) => {
      if (a.dataset.section === section) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
    });
    const user = path.match(/^\/users\/([0-9a-f-]{36})$/i);
    const oneAdmin = path.match(/^\/admins\/([0-9a-f-]{36})$/i);
    if (user) userView(admin, main, user[1]);
    else if (oneAdmin) adminView(admin, main, oneAdmin[1], tools);
    else if (section === "admins") adminsView(admin, main, tools);
    else if (section === "systems") systemsView(admin, main, tools);
    else usersView(admin, main);
  }

  window.addEventListener("hashchange", route);
  signOutButton.addEventListener("click", async () => {
    const session = sessionStorage.getItem(SESSION);
    try { if (session) await portal.post("/admin-portal/sign-out", { session }); } catch { /* already ended */ }
    leave("You are signed out.");
  });

  const token = takeResetToken();
  if (token) {
    return resetPage({ root: main, api: portal, prefix: "/admin-portal", product: "the admin console", token,
      onDone: leave });
  }
  const stored = sessionStorage.getItem(SESSION);
  if (stored) {
    try {
      await portal.post("/admin-portal/session", { session: stored });
      return enter(stored);
    } catch {
      return leave("Your session has ended. Please sign in again.");
    }
  }
  return flow.start(null, { focusForm: true });
}

start();
