// Step-up: some actions (minting an API key) need the admin's code from the last few minutes. When the
// gateway answers `step_up_required`, the console asks for a code, proves it and tries once more.

import { field, h } from "./common/ui.js";
import { actionDialog } from "./widgets.js";

const CODE = /^[0-9A-Za-z-]{6,32}$/;

/** Asks for the admin's code and sends it with `stepUp(code)`; true once stepped up, false if cancelled. */
function askForCode(stepUp, what) {
  const input = h("input", {
    type: "text", name: "code", class: "code", inputmode: "numeric", autocomplete: "one-time-code", maxlength: "32",
    required: true, spellcheck: "false",
  });
  return new Promise((resolve) => {
    const dialog = actionDialog({
      title: "Confirm it is you",
      text: `To ${what}, enter the code your authenticator app shows for the admin console now.`,
      content: field("Verification code", input, "The 6-digit code from your app; it must not be one you already used."),
      confirmLabel: "Verify and continue",
      onConfirm: async () => {
        const code = input.value.replace(/\s+/g, "");
        input.setAttribute("aria-invalid", "true");
        if (!CODE.test(code)) {
          input.focus();
          throw new Error("Enter the 6-digit code from your authenticator app.");
        }
        try {
          await stepUp(code);
        } catch (failure) {
          input.value = "";
          input.focus();
          throw failure;
        }
        input.removeAttribute("aria-invalid");
        resolve(true);
      },
    });
    dialog.addEventListener("close", () => resolve(false));
  });
}

/**
 * Runs `work()`; if the gateway wants a fresh code first, asks for it and runs `work()` again. `what` says
 * what the code is for ("mint an agent key for web-01"). Null when the admin cancels.
 */
export async function withStepUp(stepUp, what, work) {
  try {
    return await work();
  } catch (failure) {
    if (failure.code !== "step_up_required") throw failure;
  }
  return (await askForCode(stepUp, what)) ? work() : null;
}
