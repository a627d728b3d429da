// The sign-in form: one token field, Enter signs in. The token is checked with the API (`me`)
// before it is kept; a refusal says so on the form.

import { byId, setText } from "./dom.js";

export class SignInForm {
  /** onToken(token) is called on submit; it resolves once the attempt is over. */
  constructor(onToken) {
    this.section = byId("sign-in");
    this.input = byId("token-input");
    this.button = byId("sign-in-button");
    this.error = byId("sign-in-error");
    byId("sign-in-form").addEventListener("submit", async (event) => {
      event.preventDefault();
      const token = this.input.value.trim();
      if (!token) {
        this.showError("Paste your API token (it starts with rt_).");
        return;
      }
      this.button.disabled = true;
      setText(this.error, "");
      try {
        await onToken(token);
      } finally {
        this.button.disabled = false;
      }
    });
  }

  show(message = "") {
    this.section.hidden = false;
    this.input.value = "";
    setText(this.error, message);
    this.input.focus();
  }

  hide() {
    this.section.hidden = true;
    this.input.value = ""; // the token does not stay in the page
    setText(this.error, "");
  }

  showError(message) {
    setText(this.error, message);
    this.input.select();
  }
}
