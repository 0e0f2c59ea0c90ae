// A system agent key for one Linux or Mac system (docs/agents.md): minted from a stepped-up session, shown
// once with what the host needs to install the agent. The key goes into a file, never on a command line.
// An SSO application's key of the same kind is its OpenID Connect client secret (docs/sso.md).

import { copyButton, formatDate, h } from "./common/ui.js";
import { withStepUp } from "./step_up.js";
import { actionDialog } from "./widgets.js";

const KEY_FILE = "/root/agent-key";
const NAME_MAX = 200; // a key's name, like every display name

/** The gateway's address for an agent: config.api_base without its /v1, made absolute. */
export function gatewayUrl(apiBase) {
  return new URL(apiBase, window.location.href).href.replace(/\/v1\/?$/, "");
}

function isLoopback(url) {
  const host = new URL(url).hostname;
  return host === "localhost" || host === "[::1]" || /^127\./.test(host);
}

/** The command from docs/agents.md, filled in: run as root from the folder holding mfaplane_agent/. */
export function installCommand(gateway, systemId) {
  return [
    "python3 -m mfaplane_agent install \\",
    `  --gateway-url ${gateway} \\`,
    `  --system-id ${systemId} \\`,
    `  --api-key-file ${KEY_FILE}`,
    `rm ${KEY_FILE}`,
    "systemctl reload ssh",
  ].join("\n");
}

function block(id, text) {
  return h("pre", { class: "command", id }, h("code", {}, text));
}

function linuxSteps(system, gateway) {
  const command = installCommand(gateway, system.id);
  return h("div", {},
    h("h3", {}, `Install the agent on ${system.name}`),
    h("ol", { class: "install-steps" },
      h("li", {}, "As root, install Debian's libpam-python and copy the agent (",
        h("code", {}, "agents/pam/src/mfaplane_agent/"), " of the mfaplane repository) to a folder only root can write to:",
      block("install-packages", "apt-get install libpam-python")),
      h("li", {}, "Put the key in a file only root can read, then paste the key into it with an editor:",
        block("install-key-file", `install -m 600 /dev/null ${KEY_FILE}`)),
      h("li", {}, "From the folder holding ", h("code", {}, "mfaplane_agent/"), ", install the agent:",
        block("install-command", command), copyButton("Copy install command", () => command))),
    h("p", { class: "hint" }, "Keep your SSH session open until a new login works. To keep a break-glass account able to ",
      "log in while the gateway cannot be reached, add ", h("code", {}, "--exclude-users <name>"),
      ". docs/agents.md lists every option and what the command writes."));
}

function macSteps(system, gateway) {
  return h("div", {},
    h("h3", {}, `The login agent on ${system.name}`),
    h("p", {}, "A macOS login agent (docs/agents.md, \u201cmacOS, on paper\u201d) calls the gateway with this key and:"),
    h("dl", { class: "details" }, h("dt", {}, "Gateway URL"), h("dd", {}, h("code", {}, gateway)),
      h("dt", {}, "System id"), h("dd", {}, h("code", {}, system.id))));
}

function applicationSteps(system) {
  return h("p", {}, `${system.name} sends it with its client id, `, h("code", {}, system.id),
    ", to the token endpoint (client_secret_basic or client_secret_post).");
}

// What the key is called (`one`: with its article), in its name (after the system's), on its copy button.
const AGENT_KEY = { noun: "agent key", one: "an agent key", suffix: " agent", copy: "Copy key",
  text: "This is the only time the key is shown: copy it now. It decides logins on this system only." };
const CLIENT_SECRET = { noun: "client secret", one: "a client secret", suffix: " client secret", copy: "Copy client secret",
  text: "This is the only time the secret is shown: copy it now. It signs users in to this application only." };
const isApplication = (system) => system.kind === "sso_application";
const keyOf = (system) => (isApplication(system) ? CLIENT_SECRET : AGENT_KEY);
const capitalized = (text) => `${text[0].toUpperCase()}${text.slice(1)}`;

function showKey(system, issued, gateway) {
  const plainHttp = new URL(gateway).protocol === "http:" && !isLoopback(gateway);
  const application = isApplication(system);
  const kind = keyOf(system);
  actionDialog({
    title: `${capitalized(kind.noun)} for ${system.name}`,
    text: kind.text,
    content: h("div", {},
      h("div", {}, h("code", { id: "agent-key", class: "secret" }, issued.key), copyButton(kind.copy, () => issued.key)),
      h("p", { class: "hint" }, `Expires ${formatDate(issued.expires_at)}. Revoke it if it leaks, and mint a new one.`),
      plainHttp && !application ? h("p", { class: "notice" }, "This console is served over plain http: the agent accepts ",
        "http only to a loopback address, so give --gateway-url the gateway's https address.") : null,
      application ? applicationSteps(system) : system.kind === "linux" ? linuxSteps(system, gateway) : macSteps(system, gateway)),
    confirmLabel: "Done", cancelLabel: null, wide: true,
    onConfirm: () => {},
  });
}

/**
 * Mints a key bound to `system` (asking for a fresh code when the session needs one) and shows it.
 * Returns what to tell the admin, or null when they cancelled.
 */
export async function addAgentKey(api, { stepUp, apiBase }, system) {
  const { noun, one, suffix } = keyOf(system);
  const name = `${system.name.slice(0, NAME_MAX - suffix.length)}${suffix}`;
  const issued = await withStepUp(stepUp, `mint ${one} for ${system.name}`,
    () => api.post("/api-keys", { role: isApplication(system) ? "sso_client" : "system_agent", name,
      system_id: system.id }));
  if (!issued) return null;
  showKey(system, issued, gatewayUrl(apiBase));
  return `${capitalized(noun)} \u201c${name}\u201d minted for ${system.name}.`;
}
