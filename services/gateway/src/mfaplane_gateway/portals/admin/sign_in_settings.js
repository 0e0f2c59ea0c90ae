// How an SSO application signs its users in (docs/sso.md): OpenID Connect, back to one of its redirect
// URIs, or SAML 2.0, for its entity id, posting to one of its ACS URLs. Once saved, the console shows what
// the application's team needs to set the application up.

import { field, h } from "./common/ui.js";
import { actionDialog } from "./widgets.js";

const PROTOCOLS = { oidc: "OpenID Connect", saml: "SAML 2.0" };
const LABELS = { redirect_uris: "Redirect URIs", entity_id: "Entity id", acs_urls: "ACS URLs" };
const PYDANTIC_PREFIX = /^Value error, /;

const urlsInput = (name, urls) => h("textarea", { name, rows: "3", autocomplete: "off", spellcheck: "false" }, urls.join("\n"));
const linesOf = (textarea) => textarea.value.split("\n").map((line) => line.trim()).filter(Boolean);

/** Marks `control` wrong and focuses it; throws `text` for the dialog to show. */
function refuse(control, text) {
  control.setAttribute("aria-invalid", "true");
  control.focus();
  throw new Error(text);
}

/**
 * Says what a 422 refused in the admin's words: the field by its label, the line it names and why (the
 * problem's `errors` give where, `sent` what was there). Any other refusal as the API worded it.
 */
function explain(failure, sent, controls) {
  const wrong = failure.code === "validation_error" && failure.problem.errors?.find((error) => error.loc[1] in controls);
  if (!wrong) throw failure;
  const [, name, index] = wrong.loc;
  const line = Number.isInteger(index) ? ` \u201c${sent[name][index]}\u201d` : "";
  refuse(controls[name], `${LABELS[name]}:${line} ${wrong.msg.replace(PYDANTIC_PREFIX, "")}.`);
}

/** The settings the form holds, checked for what the API cannot word for the admin (a field left empty). */
function settingsIn(protocol, controls) {
  Object.values(controls).forEach((control) => control.removeAttribute("aria-invalid"));
  if (protocol === "oidc") {
    const redirectUris = linesOf(controls.redirect_uris);
    if (!redirectUris.length) refuse(controls.redirect_uris, "Enter at least one redirect URI.");
    return { protocol, redirect_uris: redirectUris };
  }
  const entityId = controls.entity_id.value.trim();
  if (!entityId) refuse(controls.entity_id, "Enter the application's entity id.");
  if (/\s/.test(entityId)) refuse(controls.entity_id, "Use an entity id without spaces.");
  const acsUrls = linesOf(controls.acs_urls);
  if (!acsUrls.length) refuse(controls.acs_urls, "Enter at least one ACS URL.");
  return { protocol, entity_id: entityId, acs_urls: acsUrls };
}

const term = (name, value) => [h("dt", {}, name), h("dd", {}, value)];
const code = (text) => h("code", {}, text);
const list = (items) => h("ul", { class: "urls" }, items.map((item) => h("li", {}, code(item))));

/** What the application's team needs; `addSecret()` makes an OpenID Connect client secret. */
function showDetails(system, signIn, addSecret) {
  const { settings, issuer } = signIn;
  const oidc = settings.protocol === "oidc";
  const makeSecret = h("button", { type: "button", class: "secondary" }, "Add client secret");
  const details = h("dl", { class: "details" },
    term("Protocol", PROTOCOLS[settings.protocol]),
    oidc ? [term("Client id", code(signIn.client_id)), term("Redirect URIs", list(settings.redirect_uris))]
      : [term("Entity id", code(settings.entity_id)), term("ACS URLs", list(settings.acs_urls))],
    // with SAML each application has an identity provider of its own (its issuer), described by its metadata
    issuer && oidc ? [term("Issuer", code(issuer)), term("Discovery URL", code(signIn.oidc_discovery_url))] : null,
    issuer && !oidc ? term("Metadata URL", code(signIn.saml_metadata_url)) : null);
  const dialog = actionDialog({
    title: `Sign-in details for ${system.name}`,
    text: "Give these to the application's team to set the application up.",
    content: h("div", {}, details,
      issuer ? null : h("p", { class: "notice" }, "Single sign-on is off on this gateway: no application can sign ",
        "users in until an operator sets PUBLIC_URL and SSO_SIGNING_KEYS_FILE."),
      oidc ? h("p", {}, "The application also needs a client secret, shown once when it is made: ", makeSecret) : null),
    confirmLabel: "Done", cancelLabel: null, wide: true,
    onConfirm: () => {},
  });
  makeSecret.addEventListener("click", () => {
    dialog.close();
    addSecret();
  });
}

/**
 * Opens `system`'s sign-in settings as the API has them now, saves them, then shows what the application's
 * team needs. `onSaved(text)` once saved; `addSecret()` makes a client secret.
 */
export async function editSignIn(api, system, { onSaved, addSecret }) {
  const path = `/systems/${system.id}/sign-in`;
  const current = (await api.get(path)).settings || { protocol: "oidc", redirect_uris: [], entity_id: null, acs_urls: [] };
  const controls = {
    redirect_uris: urlsInput("redirect_uris", current.redirect_uris),
    entity_id: h("input", { type: "text", name: "entity_id", value: current.entity_id || "", autocomplete: "off", spellcheck: "false" }),
    acs_urls: urlsInput("acs_urls", current.acs_urls),
  };
  const radios = Object.entries(PROTOCOLS).map(([value, text]) => [value, text,
    h("input", { type: "radio", name: "protocol", value, checked: value === current.protocol })]);
  const protocol = () => radios.find(([, , radio]) => radio.checked)[0];
  const oidcFields = h("div", {}, field("Redirect URIs", controls.redirect_uris,
    "One per line, exactly as the application sends them: https, or http to localhost while developing."));
  const samlFields = h("div", {}, field("Entity id", controls.entity_id, "The service provider's entity id, from its metadata."),
    field("ACS URLs", controls.acs_urls, "One per line: where the application receives assertions (HTTP-POST)."));
  const show = () => { oidcFields.hidden = protocol() !== "oidc"; samlFields.hidden = protocol() !== "saml"; };
  radios.forEach(([, , radio]) => radio.addEventListener("change", show));
  show();
  let saved = null;
  const dialog = actionDialog({
    title: `Sign-in settings for ${system.name}`,
    text: "How the application signs its users in through this gateway. Saving replaces its settings.",
    content: h("div", {},
      h("fieldset", { class: "choice" }, h("legend", {}, "Protocol"),
        radios.map(([, text, radio]) => h("label", {}, radio, text))),
      oidcFields, samlFields),
    confirmLabel: "Save settings", wide: true,
    onConfirm: async () => {
      const body = settingsIn(protocol(), controls);
      const done = await api.json("PUT", path, { body }).catch((failure) => explain(failure, body, controls));
      saved = await api.get(path);
      onSaved(done.event_ids.length ? `Saved the sign-in settings of ${system.name} (${PROTOCOLS[body.protocol]}).`
        : `${system.name} already had these sign-in settings.`);
    },
  });
  dialog.addEventListener("close", () => { if (saved) showDetails(system, saved, addSecret); });
}
